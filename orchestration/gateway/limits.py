"""Abuse limits: requests per identity, token requests and failed authentications per address (the `limits`
library, in memory: one gateway process), and the login lockout (in PostgreSQL, storage/auth.record_failure, so a
restart does not reset it)."""

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
    def __init__(self, rate_per_min: int, login_rate_per_min: int) -> None:
        # sliding window counter: O(1) per hit (a moving window keeps and shifts one timestamp per request)
        self._limiter = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        self._per_identity = RateLimitItemPerMinute(rate_per_min)
        self._per_address = RateLimitItemPerMinute(login_rate_per_min)

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(settings.gateway_rate_per_min, settings.gateway_login_rate_per_min)

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
