"""WebSocket feed logic against an injected ccxt.pro-like async client, with reconnects and gap filling.

The client needs ``watch_trades(symbol)``, ``watch_ticker(symbol)``, ``watch_order_book(symbol, limit)``
and ``close()`` (all coroutines). After a transient error the feed waits (exponential backoff with
seeded jitter), subscribes again and, for trades, fetches what it missed from REST (``backfill_trades``
on the injected sync ``rest`` client) before resuming; duplicates are dropped by id.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from trading.marketdata.backfill import RetryPolicy, backfill_trades, is_transient
from trading.marketdata.normalize import Normalizer
from trading.records import NS_PER_MS, BookSnapshot, Quote, Tick

CHANNELS = ("trades", "ticker", "order_book")


class LiveFeedError(RuntimeError):
    """A non-transient WebSocket error, or transient ones persisting past the failure budget."""


class LiveFeedArgumentError(ValueError):
    """Bad feed arguments (unknown channel...)."""


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: base * 2**n seconds capped at max_s, shortened by up to ``jitter`` (seeded)."""

    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.25
    """Fraction of the delay randomised away, so many feeds do not reconnect in lock-step."""
    seed: int = 0


class LiveFeed:
    """Async iterator of records for one (symbol, channel); iterate it with ``async for``."""

    def __init__(
        self,
        ws: Any,
        symbol: str,
        channel: str,
        *,
        rest: Any = None,
        normalizer: Normalizer | None = None,
        book_limit: int | None = None,
        backoff: Backoff = Backoff(),
        max_failures: int = 10,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rest_sleep: Callable[[float], object] = time.sleep,
        rest_retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        """``max_failures``: consecutive transient errors tolerated before giving up.
        ``sleep`` paces reconnects (async); ``rest_sleep`` paces the REST gap fill (runs in a thread)."""
        if channel not in CHANNELS:
            raise LiveFeedArgumentError(f"channel={channel!r}; use one of {CHANNELS}")
        self.ws, self.symbol, self.channel, self.rest = ws, symbol, channel, rest
        self.normalizer = normalizer or Normalizer(str(getattr(ws, "id", "unknown")))
        self.book_limit = book_limit
        self.backoff, self.max_failures = backoff, max_failures
        self._sleep, self._rest_sleep, self._rest_retry = sleep, rest_sleep, rest_retry
        self._rng = random.Random(backoff.seed)
        self.reconnects = 0
        self.recovered = 0  # trades fetched from REST after reconnects
        self.delays: list[float] = []  # reconnect waits, for monitoring

    def _delay(self, failures: int) -> float:
        b = self.backoff
        return min(b.max_s, b.base_s * 2 ** (failures - 1)) * (1.0 - b.jitter * self._rng.random())

    async def _watch(self) -> Any:
        if self.channel == "trades":
            return await self.ws.watch_trades(self.symbol)
        if self.channel == "ticker":
            return await self.ws.watch_ticker(self.symbol)
        return await self.ws.watch_order_book(self.symbol, self.book_limit)

    def _fill_gap(self, since_ns: int, until_ns: int | None) -> list[Tick]:
        pages = backfill_trades(
            self.rest, self.symbol, since_ns=since_ns, until_ns=until_ns,
            normalizer=self.normalizer, sleep=self._rest_sleep, retry=self._rest_retry,
        )  # fmt: skip
        return [t for page in pages for t in page]

    def __aiter__(self) -> AsyncIterator[Tick | Quote | BookSnapshot]:
        return self.stream()

    async def stream(self) -> AsyncIterator[Tick | Quote | BookSnapshot]:
        failures = 0
        last_ns: int | None = None  # newest trade seen: the gap fill starts there
        reconnected = False
        while True:
            try:
                raw = await self._watch()
            except Exception as exc:
                where = f"{self.normalizer.exchange} {self.channel} {self.symbol}"
                if not is_transient(exc):
                    raise LiveFeedError(f"{where}: {type(exc).__name__}: {exc}") from exc
                failures += 1
                if failures > self.max_failures:
                    raise LiveFeedError(f"{where}: gave up after {failures} consecutive errors, last {type(exc).__name__}: {exc}") from exc
                delay = self._delay(failures)
                self.delays.append(delay)
                self.reconnects += 1
                reconnected = True
                await self._sleep(delay)
                continue
            failures = 0
            if self.channel == "trades":
                if reconnected and self.rest is not None and last_ns is not None:
                    # fill [last seen, first trade of this batch) before the batch, keeping time order
                    stamps = [t["timestamp"] for t in raw if isinstance(t, dict) and type(t.get("timestamp")) is int]
                    until = min(stamps) * NS_PER_MS if stamps else None
                    missed = await asyncio.to_thread(self._fill_gap, last_ns, until)
                    self.recovered += len(missed)
                    if missed:
                        last_ns = max(last_ns, missed[-1].exchange_ts)
                    for tick in missed:
                        yield tick
                reconnected = False
                ticks = self.normalizer.trades(raw, self.symbol)
                if ticks:
                    last_ns = max(last_ns or 0, ticks[-1].exchange_ts)
                for tick in ticks:
                    yield tick
            else:
                reconnected = False
                rec = self.normalizer.ticker(raw, self.symbol) if self.channel == "ticker" else self.normalizer.order_book(raw, self.symbol)
                if rec is not None:
                    yield rec

    async def aclose(self) -> None:
        """Close the WebSocket client (ccxt.pro ``close()``)."""
        await self.ws.close()
