"""Request limits of one live account: a token-bucket budget shared by every task that calls the venue, the
venue's own usage figure (Binance's X-MBX-USED-WEIGHT-1M), and the IP-ban breaker (HTTP 418).

ccxt's own limiter (enableRateLimit) spaces requests per endpoint cost; the budget sits on top of it so that
order traffic, queries, polling and resyncs of one account together stay under a configured rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from streaming import metrics


class TokenBucket:
    """``rate_per_min`` tokens a minute, at most ``burst`` saved up.  ``acquire`` waits (FIFO across tasks, one
    lock) until the tokens are there and returns how long it waited."""

    def __init__(self, rate_per_min: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate_per_min <= 0:
            raise ValueError(f"request budget must be > 0 per minute, got {rate_per_min}")
        self.rate_per_s = rate_per_min / 60.0
        self.burst = float(burst) if burst is not None else max(1.0, rate_per_min / 10.0)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.pause_until = 0.0  # clock time before which nothing is sent (the venue said its weight is spent)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def try_take(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if they are there (returns 0), else the seconds until they will be."""
        self._refill()
        wait = max(0.0, self.pause_until - self._clock())
        if wait > 0:
            return wait
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.rate_per_s

    async def acquire(self, cost: float = 1.0) -> float:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:  # a lock belongs to one event loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        waited = 0.0
        async with self._lock:
            while (wait := self.try_take(cost)) > 0:
                await asyncio.sleep(wait)
                waited += wait
        return waited


_BUDGETS: dict[tuple[str, str], TokenBucket] = {}


def account_budget(venue: str, account: str, per_min: float, burst: float | None = None) -> TokenBucket:
    """The one budget of (venue, account) in this process: every adapter, poller and reconciler of that account
    that asks for it shares it.  A later call with another rate (or burst) changes it."""
    bucket = _BUDGETS.get((venue, account))
    if bucket is None:
        bucket = _BUDGETS[(venue, account)] = TokenBucket(per_min, burst)
    else:
        if per_min <= 0:
            raise ValueError(f"request budget must be > 0 per minute, got {per_min}")
        bucket.rate_per_s = per_min / 60.0
        bucket.burst = float(burst) if burst is not None else max(1.0, per_min / 10.0)
    return bucket


class UsedWeight:
    """The venue's own count of request weight used this minute (Binance: X-MBX-USED-WEIGHT-1M, limit 6000 on
    spot).  Past ``pause_fraction`` of the limit, the budget pauses until the minute rolls over."""

    HEADER = "x-mbx-used-weight-1m"

    def __init__(self, venue: str, account: str, bucket: TokenBucket, limit: int = 6000,
                 pause_fraction: float = 0.9, wall: Callable[[], float] = time.time):
        self.venue, self.account, self.bucket = venue, account, bucket
        self.limit, self.pause_fraction, self._wall = limit, pause_fraction, wall
        self.used: int | None = None

    def observe(self, headers: Mapping[str, str] | None) -> None:
        if not headers:
            return
        for key, value in headers.items():
            if key.lower() == self.HEADER:
                try:
                    self.used = int(value)
                except (TypeError, ValueError):
                    return
                metrics.VENUE_USED_WEIGHT.labels(self.venue, self.account).set(self.used)
                if self.used >= self.limit * self.pause_fraction:
                    now = self._wall()
                    until_minute = 60.0 - (now % 60.0)  # the venue's window is the wall-clock minute
                    self.bucket.pause_until = max(self.bucket.pause_until, self.bucket._clock() + until_minute)
                return


class Breaker:
    """Opens on an IP ban (HTTP 418): every request is refused until ``Retry-After`` has passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.until = 0.0
        self.reason: str | None = None

    def trip(self, retry_after_s: float, reason: str) -> None:
        self.until = max(self.until, self._clock() + max(retry_after_s, 1.0))
        self.reason = reason

    @property
    def open(self) -> bool:
        if self.reason is not None and self._clock() >= self.until:
            self.reason = None
        return self.reason is not None


def retry_after_s(headers: Mapping[str, str] | None, default: float, cap: float) -> float:
    """Seconds from a Retry-After header (seconds form; the HTTP-date form falls back to ``default``)."""
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            try:
                return min(max(float(value), 0.0), cap)
            except (TypeError, ValueError):
                break
    return min(default, cap)
