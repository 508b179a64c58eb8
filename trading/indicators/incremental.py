"""Technical indicators as O(1)-per-update objects (the stream) that also update over whole arrays.

``update(...)`` returns the new value, or None during warm-up.  ``update_many(...)`` takes numpy
arrays, returns arrays with NaN during warm-up, and leaves the object in the same state (same floats,
bit for bit) as the equivalent sequence of ``update`` calls.  Multi-output indicators return a small
named tuple (or a tuple of arrays).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trading.indicators.core import (
    EWM,
    IndicatorError,
    RollingExtreme,
    RollingSum,
    check_array,
    check_value,
    check_window,
)


class SMA:
    """Simple moving average of the last ``n`` values."""

    def __init__(self, n: int) -> None:
        self.n = check_window("n", n)
        self._sum = RollingSum(self.n)

    def update(self, x: float) -> float | None:
        x = check_value("value", x)
        s = self._sum.update(x)
        return None if s is None else self._sum.ref + s / self.n

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        xs = check_array("values", xs)
        s = self._sum.update_many(xs)
        return self._sum.ref + s / self.n if len(xs) else s

    def snapshot(self) -> dict:
        return self._sum.snapshot()

    def restore(self, state: dict) -> None:
        self._sum.restore(state)


class EMA:
    """Exponential moving average, alpha = 2 / (n + 1), seeded with the first value; None until n values."""

    def __init__(self, n: int) -> None:
        self.n = check_window("n", n)
        self._ewm = EWM(2.0 / (self.n + 1))

    @property
    def value(self) -> float | None:
        return self._ewm.value

    def update(self, x: float) -> float | None:
        v = self._ewm.update(check_value("value", x))
        return v if self._ewm.count >= self.n else None

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        xs = check_array("values", xs)
        before = self._ewm.count
        out = self._ewm.update_many(xs)
        out[: max(0, self.n - before - 1)] = np.nan
        return out

    def snapshot(self) -> dict:
        return self._ewm.snapshot()

    def restore(self, state: dict) -> None:
        self._ewm.restore(state)


class RSI:
    """Wilder's RSI: smoothed gains / losses (alpha = 1/n, seeded with their n-period mean); 0..100."""

    def __init__(self, n: int = 14) -> None:
        self.n = check_window("n", n)
        self._gain = EWM(1.0 / self.n, seed_n=self.n)
        self._loss = EWM(1.0 / self.n, seed_n=self.n)
        self._prev: float | None = None

    @staticmethod
    def _rsi(gain: float, loss: float) -> float:
        if loss == 0.0:
            return 50.0 if gain == 0.0 else 100.0
        return 100.0 - 100.0 / (1.0 + gain / loss)

    def update(self, x: float) -> float | None:
        x = check_value("value", x)
        prev, self._prev = self._prev, x
        if prev is None:
            return None
        d = x - prev
        g = self._gain.update(d if d > 0.0 else 0.0)
        lo = self._loss.update(-d if d < 0.0 else 0.0)
        return None if g is None else self._rsi(g, lo)

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        xs = check_array("values", xs)
        out = np.full(len(xs), np.nan)
        if len(xs) == 0:
            return out
        first = 0
        if self._prev is None:
            self._prev, first = float(xs[0]), 1
        d = np.diff(np.concatenate(([self._prev], xs[first:])))
        self._prev = float(xs[-1])
        g = self._gain.update_many(np.where(d > 0.0, d, 0.0))
        lo = self._loss.update_many(np.where(d < 0.0, -d, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 100.0 - 100.0 / (1.0 + g / lo)
        r = np.where(lo == 0.0, np.where(g == 0.0, 50.0, 100.0), r)
        out[first:] = np.where(np.isnan(g), np.nan, r)
        return out

    def snapshot(self) -> dict:
        return {"prev": self._prev, "gain": self._gain.snapshot(), "loss": self._loss.snapshot()}

    def restore(self, state: dict) -> None:
        self._prev = state["prev"]
        self._gain.restore(state["gain"])
        self._loss.restore(state["loss"])


class MACDValue(NamedTuple):
    macd: float
    signal: float
    hist: float


class MACD:
    """EMA(fast) - EMA(slow) and its EMA(signal); None until all three are warm."""

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if check_window("fast", fast) >= check_window("slow", slow):
            raise IndicatorError(f"MACD fast ({fast}) must be shorter than slow ({slow})")
        self._fast, self._slow, self._signal = EMA(fast), EMA(slow), EMA(check_window("signal", signal))

    def update(self, x: float) -> MACDValue | None:
        f, s = self._fast.update(x), self._slow.update(x)
        if f is None or s is None:
            return None
        m = f - s
        sig = self._signal.update(m)
        return None if sig is None else MACDValue(m, sig, m - sig)

    def update_many(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f, s = self._fast.update_many(xs), self._slow.update_many(xs)
        m = f - s
        valid = ~np.isnan(m)
        sig = np.full(len(m), np.nan)
        sig[valid] = self._signal.update_many(m[valid])
        m = np.where(np.isnan(sig), np.nan, m)
        return m, sig, m - sig

    def snapshot(self) -> dict:
        return {"fast": self._fast.snapshot(), "slow": self._slow.snapshot(), "signal": self._signal.snapshot()}

    def restore(self, state: dict) -> None:
        self._fast.restore(state["fast"])
        self._slow.restore(state["slow"])
        self._signal.restore(state["signal"])


class _RollingMoments:
    """Mean and variance of the last n values from shifted rolling sums of x and x^2."""

    def __init__(self, n: int, ddof: int) -> None:
        self.n = check_window("n", n)
        if self.n <= ddof:
            raise IndicatorError(f"n must exceed ddof={ddof}, got {n}")
        self.ddof = ddof
        self.ref: float | None = None
        self._s1, self._s2 = RollingSum(self.n), RollingSum(self.n)

    def update(self, x: float) -> tuple[float, float] | None:
        if self.ref is None:
            self.ref = x
        d = x - self.ref
        s1, s2 = self._s1.update(d), self._s2.update(d * d)
        if s1 is None:
            return None
        var = (s2 - s1 * s1 / self.n) / (self.n - self.ddof)
        return self.ref + s1 / self.n, math.sqrt(var) if var > 0.0 else 0.0

    def update_many(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(xs) == 0:
            return np.empty(0), np.empty(0)
        if self.ref is None:
            self.ref = float(xs[0])
        d = xs - self.ref
        s1, s2 = self._s1.update_many(d), self._s2.update_many(d * d)
        var = (s2 - s1 * s1 / self.n) / (self.n - self.ddof)
        std = np.sqrt(np.maximum(var, 0.0))  # NaN (warm-up) propagates
        return self.ref + s1 / self.n, std

    def snapshot(self) -> dict:
        return {"ref": self.ref, "s1": self._s1.snapshot(), "s2": self._s2.snapshot()}

    def restore(self, state: dict) -> None:
        self.ref = state["ref"]
        self._s1.restore(state["s1"])
        self._s2.restore(state["s2"])


class BandValue(NamedTuple):
    mid: float
    upper: float
    lower: float
    std: float


class Bollinger:
    """SMA(n) +/- k population standard deviations."""

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        self._m = _RollingMoments(n, ddof=0)
        self.k = check_value("k", k)

    def update(self, x: float) -> BandValue | None:
        r = self._m.update(check_value("value", x))
        if r is None:
            return None
        mid, std = r
        return BandValue(mid, mid + self.k * std, mid - self.k * std, std)

    def update_many(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mid, std = self._m.update_many(check_array("values", xs))
        return mid, mid + self.k * std, mid - self.k * std, std

    def snapshot(self) -> dict:
        return self._m.snapshot()

    def restore(self, state: dict) -> None:
        self._m.restore(state)


class ZScore:
    """(x - mean) / std over the last n values (population std); 0 when the window is flat."""

    def __init__(self, n: int = 20) -> None:
        self._m = _RollingMoments(n, ddof=0)

    @staticmethod
    def _flat(std: float, mean: float) -> bool:
        # A constant window leaves only rounding noise in std; call it flat rather than divide noise by noise.
        return std <= 1e-12 * max(abs(mean), 1.0)

    def update(self, x: float) -> float | None:
        x = check_value("value", x)
        r = self._m.update(x)
        if r is None:
            return None
        mean, std = r
        return 0.0 if self._flat(std, mean) else (x - mean) / std

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        xs = check_array("values", xs)
        mean, std = self._m.update_many(xs)
        flat = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (xs - mean) / std
        return np.where(flat, 0.0, z)

    def snapshot(self) -> dict:
        return self._m.snapshot()

    def restore(self, state: dict) -> None:
        self._m.restore(state)


class RollingVolatility:
    """Sample std (ddof=1) of the last n simple returns x/prev - 1, times ``sqrt(periods_per_year)`` if given.

    Simple rather than log returns: division is exactly rounded in numpy and Python alike, a
    logarithm is not guaranteed to be, and sizing decisions must be identical in both paths.
    """

    def __init__(self, n: int = 20, periods_per_year: float | None = None) -> None:
        self._m = _RollingMoments(n, ddof=1)
        self.scale = 1.0 if periods_per_year is None else math.sqrt(check_value("periods_per_year", periods_per_year))
        self._prev: float | None = None

    def update(self, x: float) -> float | None:
        x = check_value("value", x)
        if x <= 0.0:
            raise IndicatorError(f"price must be positive for returns, got {x!r}")
        prev, self._prev = self._prev, x
        if prev is None:
            return None
        r = self._m.update(x / prev - 1.0)
        return None if r is None else r[1] * self.scale

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        xs = check_array("values", xs)
        if (xs <= 0.0).any():
            raise IndicatorError(f"price must be positive for returns, got {float(xs[xs <= 0.0][0])!r}")
        out = np.full(len(xs), np.nan)
        if len(xs) == 0:
            return out
        first = 0
        if self._prev is None:
            self._prev, first = float(xs[0]), 1
        full = np.concatenate(([self._prev], xs[first:]))
        self._prev = float(xs[-1])
        _, std = self._m.update_many(full[1:] / full[:-1] - 1.0)
        out[first:] = std * self.scale
        return out

    def snapshot(self) -> dict:
        return {"prev": self._prev, "m": self._m.snapshot()}

    def restore(self, state: dict) -> None:
        self._prev = state["prev"]
        self._m.restore(state["m"])


class ATR:
    """Average true range with Wilder's smoothing (seeded with the mean of the first n true ranges)."""

    def __init__(self, n: int = 14) -> None:
        self.n = check_window("n", n)
        self._ewm = EWM(1.0 / self.n, seed_n=self.n)
        self._prev_close: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        h, lo, c = check_value("high", high), check_value("low", low), check_value("close", close)
        pc, self._prev_close = self._prev_close, c
        tr = h - lo if pc is None else max(h - lo, abs(h - pc), abs(lo - pc))
        return self._ewm.update(tr)

    def update_many(self, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
        h, lo, c = check_array("high", high), check_array("low", low), check_array("close", close)
        if len(c) == 0:
            return np.empty(0)
        pc = np.concatenate(([np.nan if self._prev_close is None else self._prev_close], c[:-1]))
        tr = np.maximum(h - lo, np.maximum(np.abs(h - pc), np.abs(lo - pc)))
        if self._prev_close is None:
            tr[0] = h[0] - lo[0]
        self._prev_close = float(c[-1])
        return self._ewm.update_many(tr)

    def snapshot(self) -> dict:
        return {"prev_close": self._prev_close, "ewm": self._ewm.snapshot()}

    def restore(self, state: dict) -> None:
        self._prev_close = state["prev_close"]
        self._ewm.restore(state["ewm"])


class VWAP:
    """Volume-weighted typical price (h+l+c)/3 over the last n bars; None while the window has no volume."""

    def __init__(self, n: int = 20) -> None:
        self.n = check_window("n", n)
        self._pv, self._v = RollingSum(self.n), RollingSum(self.n)

    def _ratio(self, spv: float, sv: float) -> float | None:
        pv = self.n * self._pv.ref + spv
        v = self.n * self._v.ref + sv
        return pv / v if v > 0.0 else None

    def update(self, high: float, low: float, close: float, volume: float) -> float | None:
        tp = (check_value("high", high) + check_value("low", low) + check_value("close", close)) / 3.0
        v = check_value("volume", volume)
        if v < 0.0:
            raise IndicatorError(f"volume must be >= 0, got {v!r}")
        spv, sv = self._pv.update(tp * v), self._v.update(v)
        return None if spv is None else self._ratio(spv, sv)

    def update_many(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> np.ndarray:
        tp = (check_array("high", high) + check_array("low", low) + check_array("close", close)) / 3.0
        v = check_array("volume", volume)
        if (v < 0.0).any():
            raise IndicatorError(f"volume must be >= 0, got {float(v[v < 0.0][0])!r}")
        spv, sv = self._pv.update_many(tp * v), self._v.update_many(v)
        if len(v) == 0:
            return spv
        pv = self.n * self._pv.ref + spv
        vv = self.n * self._v.ref + sv
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(vv > 0.0, pv / vv, np.nan)

    def snapshot(self) -> dict:
        return {"pv": self._pv.snapshot(), "v": self._v.snapshot()}

    def restore(self, state: dict) -> None:
        self._pv.restore(state["pv"])
        self._v.restore(state["v"])


class ChannelValue(NamedTuple):
    upper: float
    lower: float


class Donchian:
    """Highest high and lowest low of the last n bars."""

    def __init__(self, n: int = 20) -> None:
        self.n = check_window("n", n)
        self._hi, self._lo = RollingExtreme(self.n, 1), RollingExtreme(self.n, -1)

    def update(self, high: float, low: float) -> ChannelValue | None:
        u, lo = self._hi.update(check_value("high", high)), self._lo.update(check_value("low", low))
        return None if u is None else ChannelValue(u, lo)

    def update_many(self, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._hi.update_many(check_array("high", high)), self._lo.update_many(check_array("low", low))

    def snapshot(self) -> dict:
        return {"hi": self._hi.snapshot(), "lo": self._lo.snapshot()}

    def restore(self, state: dict) -> None:
        self._hi.restore(state["hi"])
        self._lo.restore(state["lo"])
