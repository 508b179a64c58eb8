"""Simulated time: a clock the caller advances to each event's time (backtests and the live stream).

The risk engine reads time only through a ``Clock`` (see ``trading.ports.Clock``), so replaying bars or
ticks gives the same decisions whatever the wall clock says.
"""

from __future__ import annotations


class BarClock:
    """A clock the engine advances to each event's time; the risk engine reads it by calling it."""

    __slots__ = ("ts",)

    def __init__(self, ts: int = 0) -> None:
        self.ts = ts

    def set(self, ts: int) -> None:
        self.ts = ts

    def __call__(self) -> int:
        return self.ts
