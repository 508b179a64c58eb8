"""Replay records at a chosen speed (1.0 = real time, 10.0, or as fast as possible), sync or async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

from trading.marketdata.source import available_ts
from trading.records import Bar, MarketRecord


class ReplayOrderError(ValueError):
    """Records handed to the replayer are not sorted by availability time."""


class ReplaySpeedError(ValueError):
    """A speed that is neither a positive number nor None/"max"."""


class Replayer:
    """Paces ``records`` (sorted by ``available_ts``) against ``clock``; implements trading.ports.MarketDataSource.

    ``clock`` returns ns (monotonic); ``sleep``/``async_sleep`` take seconds. Inject fakes in tests.
    Pacing is relative to the first record: record i is released at
    ``clock0 + (ts_i - ts_0) / speed``, so a slow consumer catches up instead of drifting.
    Pass a sequence (not a one-shot iterator) if you also call ``fetch_bars`` or iterate twice.
    """

    def __init__(
        self,
        records: Iterable[MarketRecord],
        speed: float | str | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        if speed == "max":
            speed = None
        if speed is not None and (isinstance(speed, (str, bool)) or not speed > 0 or speed != speed):
            raise ReplaySpeedError(f"speed={speed!r}: use a positive number (1.0 = real time) or None/'max'")
        self._records = records
        self._speed = None if speed is None else float(speed)
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep or asyncio.sleep

    def _paced(self) -> Iterator[tuple[MarketRecord, float]]:
        """(record, seconds to wait before releasing it), checking order on the way."""
        last: int | None = None
        t0 = d0 = 0
        for rec in self._records:
            ts = available_ts(rec)
            if last is not None and ts < last:
                raise ReplayOrderError(f"record {rec!r} has available_ts {ts} < previous {last}: sort by available_ts")
            if self._speed is None:
                delay = 0.0
            elif last is None:
                t0, d0, delay = self._clock(), ts, 0.0
            else:
                delay = (t0 + (ts - d0) / self._speed - self._clock()) / 1e9
            last = ts
            yield rec, delay

    def __iter__(self) -> Iterator[MarketRecord]:
        for rec, delay in self._paced():
            if delay > 0:
                self._sleep(delay)
            yield rec

    async def stream(self) -> AsyncIterator[MarketRecord]:
        for rec, delay in self._paced():
            if delay > 0:
                await self._async_sleep(delay)
            yield rec

    def fetch_bars(self, symbol: str, interval: str, start_ns: int, end_ns: int) -> list[Bar]:
        """The replayed bars of ``symbol``/``interval`` with open time in [start_ns, end_ns), unpaced."""
        return [
            r for r in self._records
            if isinstance(r, Bar) and r.symbol == symbol and r.interval == interval and start_ns <= r.exchange_ts < end_ns
        ]  # fmt: skip
