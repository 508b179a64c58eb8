"""Building blocks shared by the indicators: rolling sums, exponential averages, rolling extremes.

Every block has ``update(x)`` (one value, O(1), for the stream) and ``update_many(xs)`` (a numpy
array, vectorised, for research and the backtester's fast path).  ``update_many`` continues from the
same state as ``update`` and produces bit-identical floats: the backtester's vectorised signals and the
live stream's incremental signals must never disagree, even on a near tie.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import polars as pl


class IndicatorError(ValueError):
    """Bad indicator parameter or input value."""


def check_window(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise IndicatorError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def check_value(name: str, x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise IndicatorError(f"{name} must be finite, got {x!r}")
    return x


def check_array(name: str, xs: np.ndarray | list[float]) -> np.ndarray:
    arr = np.ascontiguousarray(xs, dtype=np.float64)
    if arr.ndim != 1:
        raise IndicatorError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise IndicatorError(f"{name} has a non-finite value {float(arr[bad])!r} at index {bad}")
    return arr


class RollingSum:
    """Sum of the last ``n`` values, as a difference of running sums.

    Values are shifted by the first value seen (``ref``) before summing: sums then grow with the
    distance from that level rather than with the price level, which keeps cancellation small.
    ``np.cumsum`` adds sequentially, exactly like the scalar loop, hence identical bits.
    """

    def __init__(self, n: int) -> None:
        self.n = check_window("window", n)
        self.ref: float | None = None
        self.count = 0
        self._cums: deque[float] = deque([0.0], maxlen=self.n)  # the last n running sums

    def update(self, x: float) -> float | None:
        """Shifted window sum ``sum(x_i - ref)`` once ``n`` values were seen, else None."""
        if self.ref is None:
            self.ref = x
        c = self._cums[-1] + (x - self.ref)
        self.count += 1
        old = self._cums[0]
        self._cums.append(c)
        if self.count < self.n:
            return None
        return c - old

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        out = np.full(len(xs), np.nan)
        if len(xs) == 0:
            return out
        if self.ref is None:
            self.ref = float(xs[0])
        prev = np.fromiter(self._cums, dtype=np.float64, count=len(self._cums))
        cums = np.cumsum(np.concatenate(([prev[-1]], xs - self.ref)))[1:]
        allc = np.concatenate((prev, cums))
        m, k = len(prev), len(xs)
        start = max(0, self.n - self.count - 1)
        if start < k:
            out[start:] = allc[m + start : m + k] - allc[m + start - self.n : m + k - self.n]
        self.count += k
        self._cums.extend(cums[-self.n :].tolist())
        return out

    def snapshot(self) -> dict:
        return {"n": self.n, "ref": self.ref, "count": self.count, "cums": list(self._cums)}

    def restore(self, state: dict) -> None:
        self.ref, self.count = state["ref"], state["count"]
        self._cums = deque(state["cums"], maxlen=self.n)


class EWM:
    """Exponentially weighted mean ``w += alpha * (x - w)`` seeded with the first value.

    ``update_many`` uses polars' ``ewm_mean(adjust=False)``, which computes exactly this recursion
    (a test pins the bit equality).  ``seed_n`` > 1 seeds with the mean of the first ``seed_n``
    values instead (Wilder's smoothing).
    """

    def __init__(self, alpha: float, seed_n: int = 1) -> None:
        if not 0.0 < alpha <= 1.0:
            raise IndicatorError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.seed_n = check_window("seed_n", seed_n)
        self.value: float | None = None
        self.count = 0
        self._seed_sum = 0.0

    def update(self, x: float) -> float | None:
        self.count += 1
        if self.count < self.seed_n:
            self._seed_sum += x
            return None
        if self.count == self.seed_n:
            self._seed_sum += x
            self.value = self._seed_sum / self.seed_n
        else:
            self.value = self.value + self.alpha * (x - self.value)
        return self.value

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        out = np.full(len(xs), np.nan)
        i = 0
        while self.value is None and i < len(xs):  # at most seed_n scalar steps
            v = self.update(float(xs[i]))
            if v is not None:
                out[i] = v
            i += 1
        if i < len(xs):
            series = pl.Series(np.concatenate(([self.value], xs[i:])))
            res = series.ewm_mean(alpha=self.alpha, adjust=False).to_numpy()[1:]
            out[i:] = res
            self.value = float(res[-1])
            self.count += len(xs) - i
        return out

    def snapshot(self) -> dict:
        return {"value": self.value, "count": self.count, "seed_sum": self._seed_sum}

    def restore(self, state: dict) -> None:
        self.value, self.count, self._seed_sum = state["value"], state["count"], state["seed_sum"]


class RollingExtreme:
    """Rolling max (``sign=1``) or min (``sign=-1``) of the last ``n`` values; exact both ways."""

    def __init__(self, n: int, sign: int) -> None:
        self.n = check_window("window", n)
        self.sign = sign
        self.count = 0
        self._window: deque[float] = deque(maxlen=self.n)
        self._mono: deque[tuple[int, float]] = deque()  # (index, value), monotonic: O(1) amortised

    def update(self, x: float) -> float | None:
        i = self.count
        self.count += 1
        self._window.append(x)
        key = self.sign * x
        while self._mono and self.sign * self._mono[-1][1] <= key:
            self._mono.pop()
        self._mono.append((i, x))
        if self._mono[0][0] <= i - self.n:
            self._mono.popleft()
        return self._mono[0][1] if self.count >= self.n else None

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        k = len(xs)
        out = np.full(k, np.nan)
        if k == 0:
            return out
        prev = np.fromiter(self._window, dtype=np.float64, count=len(self._window))[-(self.n - 1) :] if self.n > 1 else np.empty(0)
        full = np.concatenate((prev, xs))
        if len(full) >= self.n:
            windows = np.lib.stride_tricks.sliding_window_view(full, self.n)
            vals = windows.max(axis=1) if self.sign > 0 else windows.min(axis=1)
            out[k - len(vals) :] = vals  # windows end at full[n-1:], aligned to the last k inputs
        # Rebuild the scalar state from the tail so that update() continues seamlessly.
        tail = full[-self.n :].tolist()
        base = self.count + k - len(tail)
        self.count = base
        self._window.clear()
        self._mono.clear()
        for x in tail:
            self.update(x)
        return out

    def snapshot(self) -> dict:
        return {"count": self.count, "window": list(self._window)}

    def restore(self, state: dict) -> None:
        tail = state["window"]
        self.count = state["count"] - len(tail)
        self._window.clear()
        self._mono.clear()
        for x in tail:
            self.update(x)
