"""Is an identity still active, is an access token revoked: answered without a database round trip per request,
and without letting a revocation wait.

Every authenticated request refuses a disabled user, a revoked API key (or a key whose owner is disabled) and a
logged-out access token. Asking PostgreSQL on every request cost a round trip each; instead:

- ``IdentityCache``: a gateway process trusts its last "active" answer for an identity for at most ``ttl_s``
  seconds (settings.gateway_identity_cache_s, default 2; 0 turns the cache off). Only "active" is remembered: a
  refused identity is asked again every time.
- Disabling a user or revoking a key through tradeloop (orchestration/gateway/users.py: the admin routes and the
  `tradeloop users disable` / `tradeloop api-keys revoke` CLI) sends ``NOTIFY tradeloop_gateway`` in the same
  transaction; every gateway process LISTENs (``Events``) and empties its cache when the commit delivers it, and
  the process that made the change empties its own right after the commit, before it answers. So such a change
  takes effect at once in that process and as soon as the notification is delivered in the others (milliseconds
  on one host); a change made any other way (hand-written SQL) within ``ttl_s``.
- A process whose listener is not connected trusts no cached answer (it asks the database every time) and empties
  its cache when the listener connects again, so a notification missed while disconnected cannot keep a disabled
  identity alive. Without a listener (an app whose lifespan did not run) the cache is never used.
- Revoked access tokens (logout, a password change) are kept in each process's memory until the token would have
  expired; a revocation reaches the gateway's other processes by the same channel (``deny <jti> <exp>``). A
  process started after a revocation, or whose listener was down when it was sent, does not know it (as a restart
  forgot revocations before); the token still expires after gateway_access_ttl_s.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

import sqlalchemy as sa

log = logging.getLogger("tradeloop.gateway")

CHANNEL = "tradeloop_gateway"
IDENTITY_CHANGED = "identity"
_caches: weakref.WeakSet[IdentityCache] = weakref.WeakSet()  # this process's caches (tests run several apps)


class IdentityCache:
    """Remembered "active" answers, each for at most ``ttl_s`` seconds, used only while ``enabled``."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self._clock = float(ttl_s), clock
        self._until: dict[str, float] = {}
        self._generation = 0  # bumped by every invalidation: an answer asked before it is not stored after it
        self._lock = threading.Lock()
        self.enabled = False  # set while the listener is connected
        _caches.add(self)

    def get(self, key: str) -> bool:
        """True when ``key`` was found active less than ttl_s ago (and nothing invalidated it since)."""
        until = self._until.get(key)
        return self.enabled and until is not None and self._clock() < until

    def generation(self) -> int:
        return self._generation

    def put(self, key: str, asked_at: float, generation: int) -> None:
        """Remember that ``key`` was active when asked at ``asked_at`` (this cache's clock)."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self._generation:  # invalidated while the question was on its way
                return
            if len(self._until) > 100_000:  # bounded: identities that stopped calling are dropped now and then
                now = self._clock()
                self._until = {k: u for k, u in self._until.items() if u > now}
            self._until[key] = asked_at + self.ttl_s

    def clock(self) -> float:
        return self._clock()

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._until = {}


def invalidate_local() -> None:
    """Forget every cached answer in this process (after a disable or revoke committed here)."""
    for cache in list(_caches):
        cache.invalidate()


def notify(conn: sa.Connection, payload: str) -> None:
    """Tell every gateway process, when ``conn``'s transaction commits."""
    conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})


def identity_changed(conn: sa.Connection) -> None:
    """In the transaction that disables a user or revokes a key: every gateway process forgets its answers."""
    notify(conn, IDENTITY_CHANGED)


class Events:
    """A thread LISTENing on ``CHANNEL`` on a connection of its own: identity changes empty ``cache`` (and enable
    it while connected); ``deny <jti> <exp>`` calls ``on_deny``. Reconnects every second while the database is
    away; a heartbeat each second notices a dead connection."""

    def __init__(self, conninfo: str, cache: IdentityCache, on_deny: Callable[[str, int], None]) -> None:
        self._conninfo, self._cache, self._on_deny = conninfo, cache, on_deny
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-events", daemon=True)

    def start(self, wait_s: float = 5.0) -> None:
        self._thread.start()
        self.connected.wait(wait_s)  # not fatal: without the listener the cache is simply not used

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _disconnected(self) -> None:
        self.connected.clear()
        self._cache.enabled = False
        self._cache.invalidate()

    def _handle(self, payload: str) -> None:
        if payload == IDENTITY_CHANGED:
            self._cache.invalidate()
        elif payload.startswith("deny "):
            parts = payload.split()
            if len(parts) == 3 and parts[2].isdigit():
                self._on_deny(parts[1], int(parts[2]))

    def _run(self) -> None:
        import psycopg

        warned = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._cache.invalidate()  # whatever happened while nobody listened
                    self._cache.enabled = self._cache.ttl_s > 0
                    self.connected.set()
                    if warned:
                        log.info("gateway events: listening again")
                    warned = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._handle(note.payload)
                        conn.execute("SELECT 1")  # heartbeat: a dead connection raises here
            except Exception as exc:  # noqa: BLE001 -- any failure: stop trusting the cache, try again
                if not warned:
                    from deploy.redaction import scrub_exception

                    log.warning("gateway events: not listening (%s: %s); identity answers are not cached until "
                                "it reconnects", type(exc).__name__, scrub_exception(exc))
                    warned = True
            finally:
                self._disconnected()
            self._stop.wait(1.0)
