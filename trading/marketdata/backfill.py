"""Resumable, paginated REST backfill against an injected ccxt-like client (ccxt itself is never imported).

The client needs ccxt's ``fetch_ohlcv(symbol, timeframe, since, limit)``,
``fetch_trades(symbol, since, limit)``, ``parse_timeframe(tf)`` (seconds), ``rateLimit`` (ms between
requests), ``milliseconds()`` and ``id``. Pages are normalised (``Normalizer``) and yielded as lists;
overlapping pages are deduplicated by record id, so re-running a backfill is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from trading.marketdata.normalize import Normalizer
from trading.records import NS_PER_MS, Bar, Tick

# ccxt's retryable exception family, matched by name anywhere in the MRO (ccxt may not be importable here)
TRANSIENT_ERROR_NAMES = frozenset(
    {"NetworkError", "RequestTimeout", "ExchangeNotAvailable", "DDoSProtection", "RateLimitExceeded",
     "OnMaintenance", "TimeoutError", "ConnectionError"}
)  # fmt: skip


class BackfillArgumentError(ValueError):
    """Bad backfill arguments (e.g. until before since)."""


class BackfillError(RuntimeError):
    """The exchange refused a request, or transient errors persisted past the retry budget."""


def is_transient(exc: BaseException) -> bool:
    """True for network-ish failures worth retrying (ccxt NetworkError family, timeouts, resets)."""
    return any(cls.__name__ in TRANSIENT_ERROR_NAMES for cls in type(exc).__mro__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: wait base * 2**attempt seconds (capped) between attempts."""

    max_attempts: int = 5
    """Attempts per request, first one included."""
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2**attempt)


class _Pager:
    """Rate limiting and retries shared by the OHLCV and trades loops."""

    def __init__(self, client: Any, sleep: Callable[[float], object], retry: RetryPolicy) -> None:
        if retry.max_attempts < 1:
            raise BackfillArgumentError(f"retry.max_attempts={retry.max_attempts} must be >= 1")
        self.client, self.sleep, self.retry = client, sleep, retry
        self.requests = 0

    def call(self, what: str, fn: Callable[[], list]) -> list:
        for attempt in range(self.retry.max_attempts):
            if self.requests:
                self.sleep(self.client.rateLimit / 1000.0)  # ccxt's own spacing between requests
            self.requests += 1
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise BackfillError(f"{_name(self.client)} {what} failed: {type(exc).__name__}: {exc}") from exc
                if attempt + 1 == self.retry.max_attempts:
                    raise BackfillError(
                        f"{_name(self.client)} {what}: gave up after {self.retry.max_attempts} attempts, "
                        f"last error {type(exc).__name__}: {exc}"
                    ) from exc
                self.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # the loop returns or raises


def _name(client: Any) -> str:
    return str(getattr(client, "id", type(client).__name__))


def _start_ms(since_ns: int | None, last_stored_ns: int | None, step_ms: int) -> int:
    if last_stored_ns is not None:
        return last_stored_ns // NS_PER_MS + step_ms  # resume just after what is already stored
    if since_ns is None:
        raise BackfillArgumentError("give since_ns or last_stored_ns")
    return -(-since_ns // NS_PER_MS)


def backfill_ohlcv(
    client: Any,
    symbol: str,
    timeframe: str,
    *,
    since_ns: int | None = None,
    last_stored_ns: int | None = None,
    until_ns: int | None = None,
    limit: int = 1000,
    normalizer: Normalizer | None = None,
    sleep: Callable[[float], object] = time.sleep,
    retry: RetryPolicy = RetryPolicy(),
) -> Iterator[list[Bar]]:
    """Closed bars with open time in [since, until or now), one list per page, oldest first.

    ``last_stored_ns`` (the open time of the newest stored bar) resumes after it. The still-forming
    bar is never yielded, so a stored bar is final.
    """
    step_ms = int(client.parse_timeframe(timeframe) * 1000)
    cursor = _start_ms(since_ns, last_stored_ns, step_ms)
    until_ms = None if until_ns is None else -(-until_ns // NS_PER_MS)
    norm = normalizer or Normalizer(_name(client))
    pager = _Pager(client, sleep, retry)
    while True:
        now_ms = client.milliseconds()
        if (until_ms is not None and cursor >= until_ms) or cursor + step_ms > now_ms:
            return

        def keep(row: object) -> bool:
            """Closed bars inside the window (pages may start before the cursor: kraken's do).
            Malformed rows are kept so the normaliser counts them."""
            if not (isinstance(row, (list, tuple)) and row and type(row[0]) is int):
                return True
            return cursor <= row[0] and row[0] + step_ms <= now_ms and (until_ms is None or row[0] < until_ms)

        rows = pager.call(f"fetch_ohlcv({symbol}, {timeframe}, since={cursor})", lambda: client.fetch_ohlcv(symbol, timeframe, cursor, limit))
        bars = norm.ohlcv(symbol, timeframe, [r for r in rows if keep(r)])
        if not bars:
            return
        yield bars
        cursor = bars[-1].exchange_ts // NS_PER_MS + step_ms


def backfill_trades(
    client: Any,
    symbol: str,
    *,
    since_ns: int | None = None,
    last_stored_ns: int | None = None,
    until_ns: int | None = None,
    limit: int = 1000,
    window_ms: int | None = None,
    normalizer: Normalizer | None = None,
    sleep: Callable[[float], object] = time.sleep,
    retry: RetryPolicy = RetryPolicy(),
) -> Iterator[list[Tick]]:
    """Trades with exchange_ts in [since, until or now), one list per page, oldest first.

    Trades sharing the last millisecond of a page are fetched again by the next page and dropped as
    duplicates (by id). ``window_ms`` walks fixed windows, passing ``params={'until': window_end}``,
    for venues that need one (coinbase): empty windows are skipped instead of ending the backfill,
    and a full page halves the window and is re-fetched (it may have cut trades off).
    ``last_stored_ns`` resumes at that timestamp (ids already seen by this normaliser are dropped;
    storage is idempotent by id for the rest).
    """
    cursor = _start_ms(since_ns, last_stored_ns, 0)
    norm = normalizer or Normalizer(_name(client))
    pager = _Pager(client, sleep, retry)
    window = window_ms
    while True:
        now_ms = client.milliseconds()
        end_ms = now_ms if until_ns is None else min(-(-until_ns // NS_PER_MS), now_ms)
        if cursor >= end_ms:
            return
        if window is None:
            raw = pager.call(f"fetch_trades({symbol}, since={cursor})", lambda: client.fetch_trades(symbol, cursor, limit))
        else:
            window_end = min(cursor + window, end_ms)
            raw = pager.call(
                f"fetch_trades({symbol}, since={cursor}, until={window_end})",
                lambda: client.fetch_trades(symbol, cursor, limit, {"until": window_end}),
            )
            if len(raw) >= limit and window > 1:
                # a full page may have cut trades off either end of the window: retry a smaller one
                window //= 2
                continue
        in_range = [t for t in raw if not isinstance(t, dict) or type(t.get("timestamp")) is not int
                    or cursor <= t["timestamp"] < end_ms]  # fmt: skip
        ticks = norm.trades(in_range, symbol)
        if ticks:
            yield ticks
        if window is not None:
            cursor, window = window_end, min(window * 2, window_ms)  # type: ignore[type-var]
            continue
        last_ms = max((t["timestamp"] for t in raw if isinstance(t, dict) and type(t.get("timestamp")) is int), default=None)
        if last_ms is None or last_ms < cursor:
            return  # nothing more from the venue (or nothing at/after the cursor: no progress possible)
        # the next page starts at the last millisecond again: trades sharing it are dropped by id
        cursor = last_ms if ticks else last_ms + 1
