"""Abuse limits: requests per identity, token requests and failed authentications per address (the `limits`
library, in memory of each gateway process), and the login lockout (in PostgreSQL, storage/auth.record_failure,
so a restart does not reset it).

With N server processes (settings.gateway_workers) each process enforces its share, ceil(limit / N): the
processes share one listening socket and the kernel spreads connections over them, so an identity never gets more
than the configured limit in all (plus N-1 for rounding), but a client whose requests all reach one process (one
keep-alive connection) is held to that process's share. Chosen over a shared store (Redis, or a counter row in
PostgreSQL per request) because it costs nothing per request and errs on the strict side."""

from __future__ import annotations

import math
import time

from fastapi import HTTPException
from limits import RateLimitItemPerMinute, storage, strategies


class RateLimited(HTTPException):
    def __init__(self, what: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(429, f"too many requests ({what}): retry in {seconds} s",
                         headers={"Retry-After": str(seconds)})


class Limits:
    def __init__(self, rate_per_min: int, login_rate_per_min: int, processes: int = 1) -> None:
        # sliding window counter: O(1) per hit (a moving window keeps and shifts one timestamp per request)
        self._limiter = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        self._per_identity = RateLimitItemPerMinute(math.ceil(rate_per_min / processes))
        self._per_address = RateLimitItemPerMinute(math.ceil(login_rate_per_min / processes))

    @classmethod
    def from_settings(cls, settings, processes: int = 1) -> Limits:
        """The settings' limits, this process's share of them when ``processes`` serve the gateway."""
        return cls(settings.gateway_rate_per_min, settings.gateway_login_rate_per_min, max(1, processes))

    def _hit(self, item, kind: str, key: str, what: str) -> None:
        if not self._limiter.hit(item, kind, key):
            stats = self._limiter.get_window_stats(item, kind, key)
            raise RateLimited(what, stats.reset_time - time.time())

    def identity(self, key: str) -> None:
        """One authenticated request of ``key`` (kind:subject)."""
        self._hit(self._per_identity, "identity", key, "per identity")

    def token_request(self, address: str) -> None:
        """One call of the token endpoint from ``address`` (password guessing costs the address, whatever user)."""
        self._hit(self._per_address, "address", address, "token requests per address")

    def auth_failure(self, address: str) -> None:
        """A request with no or a bad token: counted against the address like token requests."""
        self._hit(self._per_address, "address", address, "failed authentications per address")
