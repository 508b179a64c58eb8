"""The worker's link to Postgres, the system of record: batched idempotent writes, the start-up
read-back and the VaR scenarios, with the queries in storage.stream / storage.market_data.

One transaction per batch, so a crash mid-batch leaves nothing half-written.  A lost connection (Postgres
down or restarting) is retried with exponential backoff until it succeeds: the caller's batch waits,
nothing is dropped.  Blocking: call it from a thread (asyncio.to_thread) inside the worker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, TypeVar

import sqlalchemy as sa
from tenacity import retry, retry_if_exception_type, wait_exponential

from storage import db
from storage import market_data
from storage import stream as stream_store
from streaming.trader import Batch, Restored

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    def __init__(self, url: str, *, mode: str = "paper", max_wait_s: float = 5.0) -> None:
        self.mode = mode
        # one connection, held between batches: the worker writes from one thread at a time (the lock
        # below), and a pool checkout with its liveness ping per batch cost a third more than the write;
        # a dead connection shows as OperationalError and is replaced by the retry
        self._engine = db.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=False,
                                        connect_args={"connect_timeout": 3})
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()
        self.retries = 0  # connection failures retried (for /metrics)
        self._retry = retry(
            retry=retry_if_exception_type((sa.exc.OperationalError, sa.exc.InterfaceError)),
            wait=wait_exponential(multiplier=0.1, max=max_wait_s),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _before_sleep(self, state: Any) -> None:
        self.retries += 1
        self._drop()
        log.warning("postgres unavailable (%s); retry %d", str(state.outcome.exception()).splitlines()[0],
                    state.attempt_number)

    def _drop(self) -> None:
        """Forget the connection (the server went away: it is dead) and the pool's copy of it."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # noqa: BLE001 -- the connection is dead anyway
                pass
            self._conn = None
        self._engine.dispose()

    def _run(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in one transaction, reconnecting and retrying while Postgres is unreachable."""

        def attempt() -> T:
            if self._conn is None or self._conn.invalidated or self._conn.closed:
                self._conn = self._engine.connect()
            with self._conn.begin():
                return fn(self._conn)

        with self._lock:
            return self._retry(attempt)()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- writes ------------------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        """Signals, orders, order events, fills, positions, bars and risk transitions of one hot-path batch."""
        if not (batch or batch.positions):
            return
        if batch.signals and not batch.account:
            raise ValueError("Store.write: a batch with signals needs its account (Batch.account; Trader.drain sets it)")
        self._run(lambda conn: stream_store.write_batch(
            conn, mode=self.mode, account=batch.account, bars=batch.bars, orders=batch.orders, events=batch.events,
            fills=batch.fills, positions=batch.positions, signals=batch.signals, transitions=batch.transitions,
            parents=batch.parents))

    def ensure_partitions(self, now_ns: int) -> None:
        """Partitions of the stream's tables for this month and the next (at start and hourly)."""
        self._run(lambda conn: stream_store.ensure_partitions_ahead(conn, now_ns))

    def audit(self, event_id: str, ts_ns: int, actor: str, action: str, scope: str, reason: str,
              details: dict) -> None:
        self._run(lambda conn: stream_store.write_audit(conn, event_id, ts_ns, actor, action, scope, reason, details))

    def write_risk_metrics(self, account: str, metrics: dict, ts_ns: int) -> int:
        """The account's numbers (and VaR when known) at ``ts_ns`` (whole second); idempotent per second."""
        return self._run(lambda conn: stream_store.write_risk_metrics(conn, account, metrics, ts_ns))

    def load_scenarios(self, exchange: str, symbols: list[str], *, interval: str, step: str, count: int,
                       min_count: int) -> tuple[list[str], Any, dict]:
        """VaR scenarios of ``symbols`` from market_data_clean (streaming.scenarios); read-only."""
        from streaming import scenarios as sc

        sc.check_config(step, count, min_count)
        rows = self._run(lambda conn: market_data.scenario_closes(
            conn, exchange, interval, list(symbols), step_s=int(sc.STEPS[step].total_seconds()),
            window_s=sc.window_seconds(step, count)))
        return sc.build(rows, list(symbols), step=step, count=count, min_count=min_count,
                        exchange=exchange, interval=interval)

    # -- start-up ------------------------------------------------------------------------------------
    def load(self, account: str, symbols: Iterable[str], *, exchange: str = "sim", interval: str = "1m",
             warmup_bars: int = 200, now_ns: int | None = None) -> Restored:
        """State of ``account`` from Postgres (storage.stream.restore_account: open orders of a dead
        worker are canceled there)."""
        rows = self._run(lambda conn: stream_store.restore_account(
            conn, account, symbols, mode=self.mode, exchange=exchange, interval=interval,
            warmup_bars=warmup_bars, now_ns=now_ns))
        st = Restored(fills=rows.fills, known_order_ids=rows.known_order_ids, bars=rows.bars, halted=rows.halted,
                      parents=rows.parents, open_orders=rows.open_orders)
        # strategies are warmed up to the last stored bar: ticks of that bar or before are replays
        for b in st.bars:
            st.watermark[b.symbol] = max(st.watermark.get(b.symbol, b.exchange_ts), b.exchange_ts)
        return st

    # -- other subjects' queries (storage.releases: releases and run-time changes) ----------------------
    def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """``fn(conn)`` in one transaction on the worker's connection, retried while Postgres is unreachable."""
        return self._run(fn)
