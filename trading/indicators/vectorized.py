"""Indicators over whole arrays (research, backtests): thin wrappers over a fresh incremental object.

Each returns float64 arrays with NaN during warm-up; the numbers are the ones the incremental
objects produce one update at a time.
"""

from __future__ import annotations

import numpy as np

from trading.indicators.incremental import (
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    VWAP,
    Bollinger,
    Donchian,
    RollingVolatility,
    ZScore,
)


def sma(x: np.ndarray, n: int) -> np.ndarray:
    return SMA(n).update_many(x)


def ema(x: np.ndarray, n: int) -> np.ndarray:
    return EMA(n).update_many(x)


def rsi(x: np.ndarray, n: int = 14) -> np.ndarray:
    return RSI(n).update_many(x)


def macd(x: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macd, signal, histogram)."""
    return MACD(fast, slow, signal).update_many(x)


def bollinger(x: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mid, upper, lower, std)."""
    return Bollinger(n, k).update_many(x)


def zscore(x: np.ndarray, n: int = 20) -> np.ndarray:
    return ZScore(n).update_many(x)


def rolling_volatility(x: np.ndarray, n: int = 20, periods_per_year: float | None = None) -> np.ndarray:
    return RollingVolatility(n, periods_per_year).update_many(x)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    return ATR(n).update_many(high, low, close)


def vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, n: int = 20) -> np.ndarray:
    return VWAP(n).update_many(high, low, close, volume)


def donchian(high: np.ndarray, low: np.ndarray, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower)."""
    return Donchian(n).update_many(high, low)
