"""Reconciliation's reads and writes in the system of record (the comparison is trading.oms.reconcile).

Reads (``read_record``): the account's open orders plus every order the venue snapshot mentions (by client
id, external id or venue order id), which of the snapshot's trades we already have (a fill's id is
``stable_id("fill", exchange, venue_trade_id)``, so the venue trade id is found by recomputing it, no
column of its own), and the expected balances: the latest baseline plus every fill after it (base
+/- quantity, quote -/+ notional, the fee out of its currency).

Writes (``write_run``, one transaction, the caller's): the missed fills and external trades into trades
(the account's mode), the statuses the venue established (orders row and the order_events journal),
external orders (external = true, never canceled here), a reconciliation_runs row, the baseline at the
first successful start, and one audit_log row per run that is not ok.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

import orjson
import sqlalchemy as sa

from storage.stream import OPEN_STATUSES, ns_of, ts_of, write_audit, write_batch
from trading.oms.reconcile import (
    candidates, EXTERNAL_STRATEGY, external_id, RecordOrder, RecordSnapshot, Reconciliation, Verdict, VenueSnapshot,
)
from trading.records import Fill, OrderEvent, OrderStatus, Side, stable_id

ACTOR = "reconciler"


def latest_baseline(conn: sa.Connection, account: str) -> tuple[int, dict[str, Decimal]] | None:
    """(ts in ns, asset -> quantity) of the account's latest baseline, or None before the first."""
    rows = conn.exec_driver_sql(
        "SELECT ts, asset, quantity FROM balance_baselines WHERE account=%s"
        " AND ts = (SELECT max(ts) FROM balance_baselines WHERE account=%s)", (account, account)).fetchall()
    if not rows:
        return None
    return ns_of(rows[0][0]), {r[1]: r[2] for r in rows if r[1]}  # '': an empty account's marker


def expected_balances(conn: sa.Connection, account: str, *, mode: str) -> tuple[int, dict[str, Decimal]] | None:
    """(baseline ts, asset -> baseline + the effect of every fill of ``mode`` after it), or None."""
    base = latest_baseline(conn, account)
    if base is None:
        return None
    ts, out = base[0], dict(base[1])
    rows = conn.exec_driver_sql(
        "WITH f AS (SELECT symbol, side, price, quantity, fee, fee_currency FROM trades"
        "           WHERE account=%s AND mode=%s AND ts > %s)"
        " SELECT asset, sum(q) FROM ("
        "  SELECT split_part(symbol, '/', 1) AS asset, CASE side WHEN 'buy' THEN quantity ELSE -quantity END AS q"
        "  FROM f UNION ALL"
        "  SELECT split_part(symbol, '/', 2), CASE side WHEN 'buy' THEN -price * quantity ELSE price * quantity END"
        "  FROM f UNION ALL"
        "  SELECT fee_currency, -fee FROM f WHERE fee <> 0) x GROUP BY asset",
        (account, mode, ts_of(ts))).fetchall()
    for asset, q in rows:
        out[asset] = out.get(asset, Decimal(0)) + q
    return ts, out


def read_record(conn: sa.Connection, account: str, *, mode: str, exchange: str, venue: VenueSnapshot) -> RecordSnapshot:
    """Our side of a reconciliation against ``venue``."""
    cids, vids, fids = candidates(venue, exchange)
    rows = conn.exec_driver_sql(
        "SELECT client_order_id, strategy, symbol, side, quantity, filled_quantity, status, venue_order_id,"
        " updated_at, external FROM orders WHERE account=%s AND mode=%s"
        " AND (status = ANY(%s) OR client_order_id = ANY(%s) OR venue_order_id = ANY(%s))",
        (account, mode, list(OPEN_STATUSES), sorted(cids), sorted(vids))).fetchall()
    orders = {r[0]: RecordOrder(r[0], r[1], r[2], Side(r[3]), r[4], r[5], OrderStatus(r[6]), r[7], ns_of(r[8]), r[9])
              for r in rows}
    have = frozenset(r[0] for r in conn.exec_driver_sql(
        "SELECT fill_id FROM trades WHERE account=%s AND fill_id = ANY(%s)", (account, sorted(fids))))
    exp = expected_balances(conn, account, mode=mode)
    return RecordSnapshot(account, exchange, orders, have, None if exp is None else exp[1],
                          None if exp is None else exp[0])


def start_since(conn: sa.Connection, account: str, *, mode: str, now_ns: int, lookback_ns: int,
                overlap_ns: int = 60_000_000_000) -> int:
    """Where a start-up snapshot's trades must begin: before the oldest open order, the newest fill and the
    last run (minus ``overlap_ns``), so nothing that happened while no worker watched is left out; with
    none of them (a first start), ``lookback_ns`` before now."""
    row = conn.exec_driver_sql(
        "SELECT least((SELECT min(created_at) FROM orders WHERE account=%(a)s AND mode=%(m)s AND status = ANY(%(o)s)),"
        " (SELECT max(ts) FROM trades WHERE account=%(a)s AND mode=%(m)s),"
        " (SELECT max(ts) FROM reconciliation_runs WHERE account=%(a)s AND mode=%(m)s AND verdict='ok'))",
        {"a": account, "m": mode, "o": list(OPEN_STATUSES)}).fetchone()
    if row is None or row[0] is None:
        return now_ns - lookback_ns
    return min(ns_of(row[0]) - overlap_ns, now_ns)


def run_id_of(account: str, kind: str, ts_ns: int) -> str:
    return stable_id("recon_run", account, kind, ts_ns)


def write_run(conn: sa.Connection, rec: Reconciliation, *, mode: str, kind: str, exchange: str,
              extra_fills: Sequence[Fill] = (), extra_events: Sequence[OrderEvent] = (),
              baseline: Mapping[str, Decimal] | None = None, journalled_elsewhere: Iterable[str] = (),
              balances: Mapping[str, Decimal] | None = None) -> str:
    """Record one run and what it found, in the caller's transaction; returns the run id.
    ``extra_*``: what the venue reported meanwhile (answers to queries at start), recorded with it.
    ``baseline``: the venue's balances to adopt (first successful start).  ``journalled_elsewhere``: orders
    whose transitions the caller's OMS journals itself (their rows are updated here, not journalled twice).
    ``balances``: the venue's, when the run compared them (kept with the run: an operator may adopt them)."""
    run_id = run_id_of(rec.account, kind, rec.ts)
    diffs = [d.to_dict() for d in rec.differences]
    props = [{"client_order_id": p.client_order_id, "symbol": p.symbol, "side": p.side.value,
              "order_type": p.order_type.value, "quantity": str(p.quantity)} for p in rec.proposals]
    first = conn.exec_driver_sql(
        "INSERT INTO reconciliation_runs (run_id, account, mode, ts, kind, verdict, reason, differences, proposals,"
        " balances) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING run_id",
        (run_id, rec.account, mode, ts_of(rec.ts), kind, rec.verdict.value, rec.reason,
         orjson.dumps(diffs).decode(), orjson.dumps(props).decode(),
         None if balances is None else orjson.dumps({a: str(q) for a, q in sorted(balances.items())}).decode())
    ).fetchone()
    if first is None:
        return run_id  # recorded before: a replayed run changes nothing (the journal is append-only)
    found = {f.fill_id for f in rec.fills}
    fills = list(rec.fills) + [f for f in extra_fills if f.fill_id not in found]
    if fills:
        write_batch(conn, mode=mode, account=rec.account, fills=fills)
    events = list(rec.events) + list(extra_events)
    if events:
        record_statuses(conn, events, skip_journal=frozenset(journalled_elsewhere))
    if rec.external_orders:
        conn.exec_driver_sql(
            "INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type, quantity,"
            " price, time_in_force, status, filled_quantity, reason, mode, created_at, updated_at, venue_order_id,"
            " external) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,'gtc',%s,%s,'found_at_venue',%s,%s,%s,%s,true)"
            " ON CONFLICT (client_order_id) DO NOTHING",
            [(external_id(exchange, o), rec.account, EXTERNAL_STRATEGY, exchange, o.symbol, o.side.value,
              o.order_type.value, o.quantity, o.price, o.status.value, o.filled_quantity, mode, ts_of(o.ts),
              ts_of(rec.ts), o.venue_order_id) for o in rec.external_orders])
    if baseline is not None:
        adopt_baseline(conn, rec.account, baseline, rec.ts, who=ACTOR, audit=False)
    if rec.verdict is not Verdict.OK:
        write_audit(conn, stable_id("recon_audit", run_id), rec.ts, ACTOR, "reconciliation", f"account:{rec.account}",
                    rec.reason, {"run_id": run_id, "kind": kind, "verdict": rec.verdict.value, "counts": rec.counts(),
                                 "proposals": len(props)})
    return run_id


def write_failed_run(conn: sa.Connection, account: str, *, mode: str, kind: str, ts_ns: int, reason: str) -> str:
    """A run that could not compare (the venue or the store failed): halted, with why."""
    run_id = run_id_of(account, kind, ts_ns)
    conn.exec_driver_sql(
        "INSERT INTO reconciliation_runs (run_id, account, mode, ts, kind, verdict, reason)"
        " VALUES (%s,%s,%s,%s,%s,'halted',%s) ON CONFLICT DO NOTHING",
        (run_id, account, mode, ts_of(ts_ns), kind, reason))
    write_audit(conn, stable_id("recon_audit", run_id), ts_ns, ACTOR, "reconciliation", f"account:{account}", reason,
                {"run_id": run_id, "kind": kind, "verdict": "halted"})
    return run_id


def record_statuses(conn: sa.Connection, events: Iterable[OrderEvent],
                    skip_journal: frozenset[str] = frozenset()) -> None:
    """Statuses the venue established: they win over ours (no ordering by time: the venue is the truth
    about its orders), and each is journalled like any other order event (but those of ``skip_journal``)."""
    events = list(events)
    conn.exec_driver_sql(
        "UPDATE orders SET status=%s, filled_quantity=%s, reason=%s, updated_at=greatest(updated_at, %s),"
        " venue_order_id=coalesce(%s, venue_order_id) WHERE client_order_id=%s",
        [(e.status.value, e.filled_quantity, e.reason, ts_of(e.ts), e.venue_order_id, e.client_order_id)
         for e in events])
    journal = [e for e in events if e.client_order_id not in skip_journal]
    if journal:
        conn.exec_driver_sql(
            "INSERT INTO order_events (client_order_id, account, status, filled_quantity, remaining_quantity,"
            " reason, ts) VALUES (%s,%s,%s,%s,%s,%s,%s)",
            [(e.client_order_id, e.account, e.status.value, e.filled_quantity, e.remaining_quantity, e.reason,
              ts_of(e.ts)) for e in journal])


def adopt_baseline(conn: sa.Connection, account: str, balances: Mapping[str, Decimal], ts_ns: int, *,
                   who: str, audit: bool = True, reason: str = "") -> None:
    """The venue's balances become what the expected balances are summed from (first start; or an
    operator accepting a deposit or withdrawal, with an audit row saying who and why)."""
    conn.exec_driver_sql(
        "INSERT INTO balance_baselines (account, ts, asset, quantity, adopted_by) VALUES (%s,%s,%s,%s,%s)"
        " ON CONFLICT DO NOTHING", [(account, ts_of(ts_ns), a, q, who) for a, q in sorted(balances.items())]
        or [(account, ts_of(ts_ns), "", Decimal(0), who)])  # an empty account still has a baseline
    if audit:
        write_audit(conn, stable_id("recon_baseline", account, ts_ns), ts_ns, who, "balance_baseline",
                    f"account:{account}", reason, {k: str(v) for k, v in sorted(balances.items())})


def runs(conn: sa.Connection, account: str, limit: int = 20) -> list[dict]:
    """The account's latest runs, newest first (for views and tests)."""
    rows = conn.exec_driver_sql(
        "SELECT run_id, ts, kind, verdict, reason, differences, proposals FROM reconciliation_runs WHERE account=%s"
        " ORDER BY ts DESC, run_id LIMIT %s", (account, limit)).fetchall()
    return [{"run_id": r[0], "ts": ns_of(r[1]), "kind": r[2], "verdict": r[3], "reason": r[4], "differences": r[5],
             "proposals": r[6]} for r in rows]


def adopt_run_balances(conn: sa.Connection, account: str, run_id: str | None = None, *, who: str,
                       reason: str) -> tuple[str, int, dict[str, Decimal]]:
    """An operator accepts the venue's balances seen by a run (``run_id``, or the latest run that compared
    balances) as the new baseline -- after a deposit or a withdrawal; audited.  Returns (run id, ts, balances)."""
    if not reason.strip():
        raise ValueError("a new balance baseline needs a reason (it is written to the audit log)")
    row = conn.exec_driver_sql(
        "SELECT run_id, ts, balances FROM reconciliation_runs WHERE account=%s AND balances IS NOT NULL"
        + (" AND run_id=%s" if run_id else "") + " ORDER BY ts DESC LIMIT 1",
        (account, run_id) if run_id else (account,)).fetchone()
    if row is None:
        what = f"run {run_id!r}" if run_id else "any run"
        raise ValueError(f"account {account!r}: no venue balances recorded by {what} (a run compares balances at start "
                         f"and every recon_balances_interval_s)")
    balances = {a: Decimal(q) for a, q in row[2].items()}
    ts = ns_of(row[1])
    adopt_baseline(conn, account, balances, ts, who=who, reason=f"{reason} (venue balances of run {row[0]})")
    return row[0], ts, balances
