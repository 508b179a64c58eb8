"""Technical indicators: vectorised functions for research, incremental objects for the stream.

Both give the same floats (the vectorised functions drive the incremental objects' ``update_many``).
"""

from trading.indicators.core import IndicatorError
from trading.indicators.incremental import (
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    VWAP,
    BandValue,
    Bollinger,
    ChannelValue,
    Donchian,
    MACDValue,
    RollingVolatility,
    ZScore,
)
from trading.indicators.vectorized import atr, bollinger, donchian, ema, macd, rolling_volatility, rsi, sma, vwap, zscore

__all__ = [
    "ATR", "EMA", "MACD", "RSI", "SMA", "VWAP", "BandValue", "Bollinger", "ChannelValue", "Donchian",
    "IndicatorError", "MACDValue", "RollingVolatility", "ZScore",
    "atr", "bollinger", "donchian", "ema", "macd", "rolling_volatility", "rsi", "sma", "vwap", "zscore",
]
