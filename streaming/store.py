"""Postgres, the system of record, for the stream: batched idempotent writes and the start-up read-back.

Every write is an upsert keyed by a deterministic id, in one transaction per batch, so a replayed batch
changes nothing and a crash mid-batch leaves nothing half-written.  A lost connection (Postgres down or
restarting) is retried with exponential backoff until it succeeds: the caller's batch waits, nothing is
dropped.  Blocking (psycopg): call it from a thread (asyncio.to_thread) inside the worker.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, TypeVar

import orjson
import psycopg
from tenacity import retry, retry_if_exception_type, wait_exponential

from trading.records import Bar, Fill, Liquidity, Side, stable_id
from streaming.trader import Batch, Restored

log = logging.getLogger(__name__)
T = TypeVar("T")

_OPEN = ("new", "ack", "partially_filled")
_RISK_METRICS = ("equity", "cash", "realized_pnl", "unrealized_pnl", "total_pnl", "daily_pnl", "drawdown",
                 "gross_exposure", "net_exposure", "leverage", "open_orders", "size_multiplier")


def ts_of(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def ns_of(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def dsn(url: str) -> str:
    """SQLAlchemy URL -> libpq DSN (drops the +driver part)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


class Store:
    def __init__(self, url: str, *, mode: str = "paper", max_wait_s: float = 5.0) -> None:
        self.dsn, self.mode = dsn(url), mode
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self.retries = 0  # connection failures retried (for /metrics)
        self._retry = retry(
            retry=retry_if_exception_type(psycopg.OperationalError),
            wait=wait_exponential(multiplier=0.1, max=max_wait_s),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _before_sleep(self, state: Any) -> None:
        self.retries += 1
        self._drop()
        log.warning("postgres unavailable (%s); retry %d", state.outcome.exception(), state.attempt_number)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 -- the connection is dead anyway
                pass
            self._conn = None

    def _run(self, fn: Callable[[psycopg.Cursor], T]) -> T:
        """Run ``fn`` in one transaction, reconnecting and retrying while Postgres is unreachable."""

        def attempt() -> T:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, connect_timeout=3)
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    return fn(cur)
            except psycopg.OperationalError:
                self._drop()
                raise

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
        account = batch.account
        mode = self.mode

        def tx(cur: psycopg.Cursor) -> None:
            if batch.bars:
                cur.executemany(
                    "INSERT INTO market_data (exchange, symbol, interval, ts, open, high, low, close, volume,"
                    " record_id, receive_ts, source) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'stream')"
                    " ON CONFLICT DO NOTHING",
                    [(b.exchange, b.symbol, b.interval, ts_of(b.exchange_ts), b.open, b.high, b.low, b.close,
                      b.volume, b.id, ts_of(b.receive_ts)) for b in batch.bars])
            if batch.orders:
                cur.executemany(
                    "INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type,"
                    " quantity, price, stop_price, time_in_force, post_only, status, filled_quantity, parent_id,"
                    " mode, created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'new',0,%s,%s,%s,%s)"
                    " ON CONFLICT (client_order_id) DO NOTHING",
                    [(o.client_order_id, o.account, o.strategy, o.exchange, o.symbol, o.side.value,
                      o.order_type.value, o.quantity, o.price, o.stop_price, o.time_in_force.value, o.post_only,
                      o.parent_id, mode, ts_of(o.ts), ts_of(o.ts)) for o in batch.orders])
            if batch.events:
                # later events win; a replayed older event never moves an order backwards
                cur.executemany(
                    "UPDATE orders SET status=%s, filled_quantity=%s, reason=%s, updated_at=%s"
                    " WHERE client_order_id=%s AND (updated_at < %s OR (updated_at = %s AND filled_quantity <= %s))",
                    [(e.status.value, e.filled_quantity, e.reason, ts_of(e.ts), e.client_order_id, ts_of(e.ts),
                      ts_of(e.ts), e.filled_quantity) for e in batch.events])
            if batch.fills:
                cur.executemany(
                    "INSERT INTO trades (fill_id, client_order_id, account, strategy, exchange, symbol, side,"
                    " price, quantity, fee, fee_currency, liquidity, ts, mode)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                    [(f.fill_id, f.client_order_id, f.account, f.strategy, f.exchange, f.symbol, f.side.value,
                      f.price, f.quantity, f.fee, f.fee_currency, f.liquidity.value, ts_of(f.ts), mode)
                     for f in batch.fills])
            if batch.positions:
                now = datetime.now(timezone.utc)
                cur.executemany(
                    "INSERT INTO positions (account, strategy, symbol, quantity, avg_price, realized_pnl, fees,"
                    " updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (account, strategy, symbol) DO"
                    " UPDATE SET quantity=EXCLUDED.quantity, avg_price=EXCLUDED.avg_price,"
                    " realized_pnl=EXCLUDED.realized_pnl, fees=EXCLUDED.fees, updated_at=EXCLUDED.updated_at",
                    [(p.account, p.strategy, p.symbol, p.quantity, p.avg_price, p.realized_pnl, p.fees, now)
                     for p in batch.positions])
            if batch.signals:
                # same transaction as the orders they caused: a signal row exists iff its batch was stored
                cur.executemany(
                    "INSERT INTO signals (signal_id, ts, account, strategy, symbol, score, target, model_name,"
                    " model_version, shadow) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (signal_id) DO NOTHING",
                    [(s.signal_id, ts_of(s.ts), account, s.strategy, s.symbol, s.score, s.target, s.model_name,
                      s.model_version, s.shadow) for s in batch.signals])
            for t in batch.transitions:
                self._audit(cur, stable_id("transition", t.scope, t.old.value, t.new.value, t.ts, t.reason),
                            t.ts, t.who, "risk_state", t.scope, t.reason, {"old": t.old.value, "new": t.new.value})

        self._run(tx)

    @staticmethod
    def _audit(cur: psycopg.Cursor, event_id: str, ts_ns: int, actor: str, action: str, scope: str, reason: str,
               details: dict) -> None:
        cur.execute(
            "INSERT INTO audit_log (event_id, ts, actor, action, scope, reason, details)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (event_id, ts_of(ts_ns), actor, action, scope, reason, orjson.dumps(details).decode()))

    def audit(self, event_id: str, ts_ns: int, actor: str, action: str, scope: str, reason: str,
              details: dict) -> None:
        self._run(lambda cur: self._audit(cur, event_id, ts_ns, actor, action, scope, reason, details))

    def write_risk_metrics(self, account: str, metrics: dict, ts_ns: int) -> int:
        """The account's numbers (and VaR when known) at ``ts_ns`` (whole second); idempotent per second."""
        ts = ts_of(ts_ns - ts_ns % 1_000_000_000)
        rows = [(ts, account, "account", k, Decimal(repr(float(metrics[k]))))
                for k in _RISK_METRICS if k in metrics and math.isfinite(float(metrics[k]))]
        var = metrics.get("var", {}).get("account")
        if var:
            # named by confidence (var_95, cvar_95) so that a change of confidence starts a new series
            # instead of silently mixing two quantiles under one name
            pct = f"{float(var['confidence']) * 100:g}".replace(".", "_")
            rows += [(ts, account, "account", f"{k}_{pct}", Decimal(repr(float(var[k]))))
                     for k in ("var", "cvar") if math.isfinite(float(var[k]))]

        def tx(cur: psycopg.Cursor) -> int:
            cur.executemany(
                "INSERT INTO risk_metrics (ts, account, scope, metric, value) VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT DO NOTHING", rows)
            return len(rows)

        return self._run(tx)

    def load_scenarios(self, exchange: str, symbols: list[str], *, interval: str, step: str, count: int,
                       min_count: int) -> tuple[list[str], Any, dict]:
        """VaR scenarios of ``symbols`` from market_data_clean (streaming.scenarios); read-only."""
        from streaming import scenarios as sc

        sc.check_config(step, count, min_count)
        params = {"ex": exchange, "iv": interval, "syms": list(symbols), "step": f"{int(sc.STEPS[step].total_seconds())} seconds",
                  "window": sc.window(step, count)}

        def tx(cur: psycopg.Cursor) -> list:
            cur.execute(sc.closes_sql(), params)
            return cur.fetchall()

        return sc.build(self._run(tx), list(symbols), step=step, count=count, min_count=min_count,
                        exchange=exchange, interval=interval)

    # -- start-up ------------------------------------------------------------------------------------
    def load(self, account: str, symbols: Iterable[str], *, exchange: str = "sim", interval: str = "1m",
             warmup_bars: int = 200, now_ns: int | None = None) -> Restored:
        """State of ``account`` from Postgres.  Orders left open by a dead worker are canceled: the paper
        venue that held them died with it (an audit row says so)."""
        symbols = list(symbols)
        mode = self.mode

        def tx(cur: psycopg.Cursor) -> Restored:
            st = Restored()
            cur.execute(
                "SELECT fill_id, client_order_id, account, strategy, exchange, symbol, side, price, quantity,"
                " fee, fee_currency, liquidity, ts FROM trades WHERE account=%s AND mode=%s ORDER BY ts, fill_id",
                (account, mode))
            st.fills = [Fill(r[0], r[1], r[2], r[3], r[4], r[5], Side(r[6]), r[7], r[8], r[9], r[10],
                             Liquidity(r[11]), ns_of(r[12])) for r in cur.fetchall()]
            cur.execute("SELECT client_order_id FROM orders WHERE account=%s", (account,))
            st.known_order_ids = {r[0] for r in cur.fetchall()}
            cur.execute("UPDATE orders SET status='canceled', reason='worker_restart', updated_at=now()"
                        " WHERE account=%s AND mode=%s AND status = ANY(%s) RETURNING client_order_id",
                        (account, mode, list(_OPEN)))
            dead = [r[0] for r in cur.fetchall()]
            if dead:
                self._audit(cur, stable_id("restart_cancel", account, *sorted(dead)), now_ns or 0, "stream",
                            "cancel_open_orders", f"account:{account}", "worker_restart", {"orders": dead})
            if symbols:
                cur.execute(
                    "SELECT exchange, symbol, interval, ts, open, high, low, close, volume FROM ("
                    " SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) AS rn FROM market_data"
                    " WHERE exchange=%s AND interval=%s AND symbol = ANY(%s)) x WHERE rn <= %s ORDER BY ts, symbol",
                    (exchange, interval, symbols, warmup_bars))
                st.bars = [Bar(r[0], r[1], r[2], ns_of(r[3]), ns_of(r[3]), r[4], r[5], r[6], r[7], r[8])
                           for r in cur.fetchall()]
                # strategies are warmed up to the last stored bar: ticks of that bar or before are replays
                for b in st.bars:
                    st.watermark[b.symbol] = max(st.watermark.get(b.symbol, b.exchange_ts), b.exchange_ts)
            cur.execute("SELECT action, actor, reason FROM audit_log WHERE scope=%s AND action IN"
                        " ('kill_switch', 'resume') ORDER BY ts DESC, event_id DESC LIMIT 1", (f"account:{account}",))
            row = cur.fetchone()
            if row is not None and row[0] == "kill_switch":
                st.halted = (row[1], row[2])
            return st

        return self._run(tx)
