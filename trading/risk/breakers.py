"""Per-symbol volatility circuit breaker: a rolling window of log returns with O(1) updates."""

from __future__ import annotations

import math
from collections import deque


class VolatilityMonitor:
    """Tells whether a new price's return lies beyond ``sigma`` standard deviations of the previous
    ``window`` returns.  Running sums make each update O(1); they are recomputed from the window
    once per ``window`` updates so float drift cannot build up."""

    __slots__ = ("window", "min_samples", "_returns", "_sum", "_sumsq", "_last", "_since_rebuild")

    def __init__(self, window: int, min_samples: int) -> None:
        self.window = window
        self.min_samples = min_samples
        self._returns: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self._last: float | None = None
        self._since_rebuild = 0

    def update(self, price: float) -> tuple[float, float] | None:
        """Add a valid price; returns (return, sigma of the window before it) when there is enough
        history to judge the move, else None."""
        last, self._last = self._last, price
        if last is None:
            return None
        r = math.log(price / last)
        judged = None
        n = len(self._returns)
        if n >= self.min_samples:
            mean = self._sum / n
            var = max(self._sumsq / n - mean * mean, 0.0) * n / max(n - 1, 1)
            judged = (r - mean, math.sqrt(var))
        self._returns.append(r)
        self._sum += r
        self._sumsq += r * r
        if len(self._returns) > self.window:
            old = self._returns.popleft()
            self._sum -= old
            self._sumsq -= old * old
        self._since_rebuild += 1
        if self._since_rebuild >= self.window:
            self._since_rebuild = 0
            self._sum = math.fsum(self._returns)
            self._sumsq = math.fsum(x * x for x in self._returns)
        return judged

    def reset(self) -> None:
        """Forget the history (after an operator resume, a new regime is judged afresh)."""
        self._returns.clear()
        self._sum = self._sumsq = 0.0
        self._last = None
        self._since_rebuild = 0


def trips(judged: tuple[float, float] | None, sigma_limit: float, min_move_bps: float) -> bool:
    """True when the move is beyond ``sigma_limit`` sigmas and at least ``min_move_bps``."""
    if judged is None:
        return False
    move, sigma = judged
    return abs(move) > sigma_limit * sigma and abs(move) * 1e4 >= min_move_bps
