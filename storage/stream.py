"""What the stream worker writes to and reads back from the system of record.

Writes (one transaction per hot-path batch, the caller's): bars, orders, order events, fills, positions,
signals, audit rows and risk metrics.  Every write is an upsert keyed by a deterministic id, so a
replayed batch changes nothing.  Reads: the state a worker restores at start-up.

Driver: the caller's SQLAlchemy connection of a psycopg-3 engine (SQLAlchemy's pool and transaction).
The batch write goes through that connection's psycopg cursor: one pipelined ``executemany`` per table,
with the driver's ``%s`` SQL.  Measured on the worker's batches (~20 rows each): ``exec_driver_sql`` per
table with a pool checkout per batch cost ~10 % more CPU per batch than the raw psycopg connection this
replaced; the cursor on a held connection (streaming/store.py) is at parity.  The start-up reads, run
once, use ``exec_driver_sql``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable, Sequence

import orjson
import sqlalchemy as sa

from trading.records import (
    Bar, Fill, Liquidity, OrderRequest, OrderStatus, OrderType, Side, TimeInForce, stable_id,
)

OPEN_STATUSES = tuple(s.value for s in OrderStatus if s.is_open)
RISK_METRICS = ("equity", "cash", "realized_pnl", "unrealized_pnl", "total_pnl", "daily_pnl", "drawdown",
                "gross_exposure", "net_exposure", "leverage", "open_orders", "size_multiplier")


def ts_of(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def ns_of(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


# the stream's time-series tables: monthly range partitions on the embedded server (hypertables with
# TimescaleDB, where the function does nothing); a row with no partition for its month lands in the
# default partition, which grows without bound
PARTITIONED = ("market_data", "trades", "risk_metrics", "audit_log", "signals")
PARTITION_AHEAD_NS = 35 * 86_400 * 1_000_000_000  # next month's partition exists before the month starts


def ensure_partitions_ahead(conn: sa.Connection, now_ns: int) -> None:
    """This month's and next month's partitions of every table the stream writes (idempotent)."""
    from storage.lifecycle import ensure_ahead  # lifecycle builds on this module's writes

    ensure_ahead(conn, now_ns, PARTITIONED)


# -- writes ------------------------------------------------------------------------------------------

def write_batch(conn: sa.Connection, *, mode: str, account: str = "", bars: Sequence = (), orders: Sequence = (),
                events: Sequence = (), fills: Sequence = (), positions: Sequence = (), signals: Sequence = (),
                transitions: Sequence = (), parents: Sequence = ()) -> None:
    """Everything one drain of the hot path produced, in the caller's transaction."""
    if signals and not account:
        raise ValueError("write_batch: signals need their account (signal records carry none)")
    with conn.connection.driver_connection.cursor() as cur:
        _write_rows(cur.executemany, mode, account, bars, orders, events, fills, positions, signals)
        if parents:
            _write_parents(cur.executemany, mode, parents)
    for t in transitions:
        write_audit(conn, stable_id("transition", t.scope, t.old.value, t.new.value, t.ts, t.reason),
                    t.ts, t.who, "risk_state", t.scope, t.reason, {"old": t.old.value, "new": t.new.value})


def _write_rows(run, mode: str, account: str, bars, orders, events, fills, positions, signals) -> None:
    """``run``: a psycopg cursor's executemany."""
    if bars:
        run("INSERT INTO market_data (exchange, symbol, interval, ts, open, high, low, close, volume,"
            " record_id, receive_ts, source) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'stream')"
            " ON CONFLICT DO NOTHING",
            [(b.exchange, b.symbol, b.interval, ts_of(b.exchange_ts), b.open, b.high, b.low, b.close,
              b.volume, b.id, ts_of(b.receive_ts)) for b in bars])
    if orders:
        run("INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type,"
            " quantity, price, stop_price, time_in_force, post_only, status, filled_quantity, parent_id,"
            " mode, created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'new',0,%s,%s,%s,%s)"
            " ON CONFLICT (client_order_id) DO NOTHING",
            [(o.client_order_id, o.account, o.strategy, o.exchange, o.symbol, o.side.value,
              o.order_type.value, o.quantity, o.price, o.stop_price, o.time_in_force.value, o.post_only,
              o.parent_id, mode, ts_of(o.ts), ts_of(o.ts)) for o in orders])
    if events:
        # the order shows its latest event (one update per order and batch); a replayed older event never
        # moves an order backwards
        latest = list({e.client_order_id: e for e in events}.values())
        run("UPDATE orders SET status=%s, filled_quantity=%s, reason=%s, updated_at=%s,"
            " venue_order_id=coalesce(%s, venue_order_id)"
            " WHERE client_order_id=%s AND (updated_at < %s OR (updated_at = %s AND filled_quantity <= %s))",
            [(e.status.value, e.filled_quantity, e.reason, ts_of(e.ts), e.venue_order_id, e.client_order_id,
              ts_of(e.ts), ts_of(e.ts), e.filled_quantity) for e in latest])
        # the journal: every transition, in the order the OMS made it (append-only, see migration 0009)
        run("INSERT INTO order_events (client_order_id, account, status, filled_quantity, remaining_quantity,"
            " reason, ts) VALUES (%s,%s,%s,%s,%s,%s,%s)",
            [(e.client_order_id, e.account, e.status.value, e.filled_quantity, e.remaining_quantity, e.reason,
              ts_of(e.ts)) for e in events])
    if fills:
        run("INSERT INTO trades (fill_id, client_order_id, account, strategy, exchange, symbol, side,"
            " price, quantity, fee, fee_currency, liquidity, ts, mode)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            [(f.fill_id, f.client_order_id, f.account, f.strategy, f.exchange, f.symbol, f.side.value,
              f.price, f.quantity, f.fee, f.fee_currency, f.liquidity.value, ts_of(f.ts), mode) for f in fills])
    if positions:
        now = datetime.now(timezone.utc)
        run("INSERT INTO positions (account, strategy, symbol, quantity, avg_price, realized_pnl, fees,"
            " updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (account, strategy, symbol) DO"
            " UPDATE SET quantity=EXCLUDED.quantity, avg_price=EXCLUDED.avg_price,"
            " realized_pnl=EXCLUDED.realized_pnl, fees=EXCLUDED.fees, updated_at=EXCLUDED.updated_at",
            [(p.account, p.strategy, p.symbol, p.quantity, p.avg_price, p.realized_pnl, p.fees, now)
             for p in positions])
    if signals:
        # same transaction as the orders they caused: a signal row exists iff its batch was stored; the key is
        # (signal_id, ts) and the id is derived from the decision time, so a replay conflicts and adds nothing
        run("INSERT INTO signals (signal_id, ts, account, strategy, symbol, score, target, model_name,"
            " model_version, shadow, features) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            [(s.signal_id, ts_of(s.ts), account, s.strategy, s.symbol, s.score, s.target, s.model_name,
              s.model_version, s.shadow, None if s.features is None else orjson.dumps(s.features).decode())
             for s in signals])


def write_audit(conn: sa.Connection, event_id: str, ts_ns: int, actor: str, action: str, scope: str, reason: str,
                details: dict, *, identity: str | None = None, source: str | None = None) -> None:
    """One audit_log row; a replayed event id adds nothing. ``identity``: who was authenticated (a verified
    control message's signer), ``source``: where the action came from; None for the platform's own decisions.
    audit_log is append-only (0013): rows are never updated, so the first write of an event id is the record."""
    conn.exec_driver_sql(
        "INSERT INTO audit_log (event_id, ts, actor, action, scope, reason, details, identity, source)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
        (event_id, ts_of(ts_ns), actor, action, scope, reason, orjson.dumps(details).decode(), identity, source))


def write_risk_metrics(conn: sa.Connection, account: str, metrics: dict, ts_ns: int) -> int:
    """The account's numbers (and VaR when known) at ``ts_ns`` (whole second); idempotent per second.
    Returns the number of rows offered."""
    ts = ts_of(ts_ns - ts_ns % 1_000_000_000)
    rows = [(ts, account, "account", k, Decimal(repr(float(metrics[k]))))
            for k in RISK_METRICS if k in metrics and math.isfinite(float(metrics[k]))]
    var = metrics.get("var", {}).get("account")
    if var:
        # named by confidence (var_95, cvar_95) so that a change of confidence starts a new series
        # instead of silently mixing two quantiles under one name
        pct = f"{float(var['confidence']) * 100:g}".replace(".", "_")
        rows += [(ts, account, "account", f"{k}_{pct}", Decimal(repr(float(var[k]))))
                 for k in ("var", "cvar") if math.isfinite(float(var[k]))]
    if rows:
        conn.exec_driver_sql("INSERT INTO risk_metrics (ts, account, scope, metric, value) VALUES (%s,%s,%s,%s,%s)"
                             " ON CONFLICT DO NOTHING", rows)
    return len(rows)


# -- start-up reads ------------------------------------------------------------------------------------

@dataclass
class RestoredRows:
    """An account's state as stored: what a restarting worker rebuilds itself from."""

    fills: list[Fill] = field(default_factory=list)  # every fill of the account, in time order
    known_order_ids: set[str] = field(default_factory=set)
    bars: list[Bar] = field(default_factory=list)  # recent bars per symbol, time order
    halted: tuple[str, str] | None = None  # (who, reason) of a kill switch not yet resumed
    parents: list = field(default_factory=list)  # working parent orders: (ParentRecord, child ids) each
    open_orders: list = field(default_factory=list)  # sandbox/live: (OrderRequest, status, filled, venue id)


def _write_parents(run, mode: str, parents: Sequence) -> None:
    """The router's parent orders, latest state per parent."""
    latest = {p.parent_id: p for p in parents}.values()
    run("INSERT INTO parent_orders (parent_id, account, strategy, exchange, symbol, side, algorithm, quantity,"
        " arrival_price, params, status, filled_quantity, reason, mode, created_at, updated_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (parent_id) DO UPDATE SET"
        " status=EXCLUDED.status, filled_quantity=EXCLUDED.filled_quantity, reason=EXCLUDED.reason,"
        " updated_at=EXCLUDED.updated_at",
        [(p.parent_id, p.account, p.strategy, p.exchange, p.symbol, p.side.value, p.algorithm, p.quantity,
          p.arrival_price, orjson.dumps(p.params).decode(), p.status, p.filled_quantity, p.reason, mode,
          ts_of(p.created_ts), ts_of(p.updated_ts)) for p in latest])


def restore_account(conn: sa.Connection, account: str, symbols: Iterable[str], *, mode: str, exchange: str,
                    interval: str, warmup_bars: int, now_ns: int | None = None) -> RestoredRows:
    """Read ``account`` back, in the caller's transaction.  Paper: orders left open by a dead worker are
    canceled -- the paper venue that held them died with it (an audit row says so).  Sandbox and live: the
    exchange still holds them, so they are returned (``open_orders``) for the OMS to ask the venue about."""
    live = mode in ("sandbox", "live")
    rows = _restore(conn, account, list(symbols), mode=mode, exchange=exchange, interval=interval,
                    warmup_bars=warmup_bars, now_ns=now_ns, cancel_open=not live)
    if live:
        rows.open_orders = _open_orders(conn.exec_driver_sql, account, mode)
    return rows


def _open_orders(run, account: str, mode: str) -> list:
    rows = run("SELECT client_order_id, account, strategy, exchange, symbol, side, order_type, quantity, price,"
               " stop_price, time_in_force, post_only, created_at, parent_id, status, filled_quantity, venue_order_id"
               " FROM orders WHERE account=%s AND mode=%s AND status = ANY(%s) ORDER BY created_at, client_order_id",
               (account, mode, list(OPEN_STATUSES))).fetchall()
    return [(OrderRequest(r[0], r[1], r[2], r[3], r[4], Side(r[5]), OrderType(r[6]), r[7], r[8], r[9],
                          TimeInForce(r[10]), r[11], ns_of(r[12]), r[13]), OrderStatus(r[14]), r[15], r[16])
            for r in rows]


def _restore(conn: sa.Connection, account: str, symbols: list[str], *, mode: str, exchange: str, interval: str,
             warmup_bars: int, now_ns: int | None, cancel_open: bool) -> RestoredRows:
    run = conn.exec_driver_sql
    out = RestoredRows()
    rows = run("SELECT fill_id, client_order_id, account, strategy, exchange, symbol, side, price, quantity,"
               " fee, fee_currency, liquidity, ts FROM trades WHERE account=%s AND mode=%s ORDER BY ts, fill_id",
               (account, mode)).fetchall()
    out.fills = [Fill(r[0], r[1], r[2], r[3], r[4], r[5], Side(r[6]), r[7], r[8], r[9], r[10],
                      Liquidity(r[11]), ns_of(r[12])) for r in rows]
    out.known_order_ids = {r[0] for r in run("SELECT client_order_id FROM orders WHERE account=%s", (account,))}
    dead = [] if not cancel_open else [
        r[0] for r in run("UPDATE orders SET status='canceled', reason='worker_restart', updated_at=now()"
                          " WHERE account=%s AND mode=%s AND status = ANY(%s) RETURNING client_order_id",
                          (account, mode, list(OPEN_STATUSES)))]
    if dead:
        run("INSERT INTO order_events (client_order_id, account, status, filled_quantity, remaining_quantity,"
            " reason, ts) SELECT client_order_id, account, status, filled_quantity,"
            " greatest(quantity - filled_quantity, 0), reason, updated_at FROM orders WHERE client_order_id = ANY(%s)"
            " ORDER BY client_order_id", (dead,))
        write_audit(conn, stable_id("restart_cancel", account, *sorted(dead)), now_ns or 0, "stream",
                    "cancel_open_orders", f"account:{account}", "worker_restart", {"orders": dead})
    if symbols:
        rows = run("SELECT exchange, symbol, interval, ts, open, high, low, close, volume FROM ("
                   " SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) AS rn FROM market_data"
                   " WHERE exchange=%s AND interval=%s AND symbol = ANY(%s)) x WHERE rn <= %s ORDER BY ts, symbol",
                   (exchange, interval, symbols, warmup_bars)).fetchall()
        out.bars = [Bar(r[0], r[1], r[2], ns_of(r[3]), ns_of(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]
    out.parents = _working_parents(run, account, mode)
    row = run("SELECT action, actor, reason FROM audit_log WHERE scope=%s AND action IN ('kill_switch', 'resume')"
              " ORDER BY ts DESC, event_id DESC LIMIT 1", (f"account:{account}",)).fetchone()
    if row is not None and row[0] == "kill_switch":
        out.halted = (row[1], row[2])
    return out


def _working_parents(run, account: str, mode: str) -> list:
    """Parent orders still being worked when the worker stopped, with the ids of their children so far."""
    from trading.oms.router import ParentRecord

    out = []
    rows = run("SELECT parent_id, account, strategy, exchange, symbol, side, algorithm, quantity, arrival_price,"
               " params, status, filled_quantity, reason, created_at, updated_at FROM parent_orders"
               " WHERE account=%s AND mode=%s AND status='working' ORDER BY created_at, parent_id",
               (account, mode)).fetchall()
    for r in rows:
        rec = ParentRecord(r[0], r[1], r[2], r[3], r[4], Side(r[5]), r[6], r[7], r[8], dict(r[9]), r[10], r[11],
                           r[12], ns_of(r[13]), ns_of(r[14]))
        children = [c[0] for c in run("SELECT client_order_id FROM orders WHERE parent_id=%s ORDER BY created_at,"
                                      " client_order_id", (rec.parent_id,))]
        out.append((rec, children))
    return out
