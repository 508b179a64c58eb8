"""The stream trades through the OMS: the journal in order_events, parent orders worked by the router and
resumed after a restart, against the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal

import pytest

from tests.streaming.conftest import sim_ticks


def _trader(account: str, participation: float):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.oms.router import Router, RouterConfig
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    inst = {i.symbol: i for i in sim.instruments()}
    return Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(1_000_000),
                  limits=RiskLimits(), instruments=inst,
                  router=Router(RouterConfig(participation=participation, volume_window_s=300, slice_s=60),
                                {s: i.lot_size for s, i in inst.items()}))


def _store(engine, trader) -> None:
    from storage.stream import write_batch

    b = trader.drain()
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account=b.account, bars=b.bars, orders=b.orders, events=b.events,
                    fills=b.fills, positions=b.positions, signals=b.signals, parents=b.parents)
    trader.release()


def _restored(engine, account):
    from storage.stream import restore_account
    from streaming.trader import Restored

    with engine.begin() as conn:
        rows = restore_account(conn, account, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], mode="paper", exchange="sim",
                               interval="1m", warmup_bars=50)
    return Restored(fills=rows.fills, known_order_ids=rows.known_order_ids, bars=rows.bars, parents=rows.parents)


def test_every_transition_is_journalled_and_the_journal_cannot_be_rewritten(engine):
    import sqlalchemy as sa

    account = f"oms-j-{uuid.uuid4().hex[:8]}"
    trader = _trader(account, participation=0)  # no routing: every order whole
    for t in sim_ticks(40):
        trader.on_tick(t)
    _store(engine, trader)
    with engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT e.client_order_id, e.status FROM order_events e JOIN orders o USING"
                                    " (client_order_id) WHERE o.account=:a ORDER BY e.event_no"),
                            {"a": account}).fetchall()
        final = dict(conn.execute(sa.text("SELECT client_order_id, status FROM orders WHERE account=:a"),
                                  {"a": account}).fetchall())
    assert final, "the strategy traded nothing in 40 minutes"
    paths: dict[str, list[str]] = {}
    for cid, st in rows:
        paths.setdefault(cid, []).append(st)
    for cid, path in paths.items():
        assert path[:2] == ["new", "submitting"], path
        assert path[-1] == final[cid]
    assert Counter(final.values())["filled"] == len(final)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE order_events SET status='rejected' WHERE account=:a"), {"a": account})
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM order_events WHERE account=:a"), {"a": account})


def test_parent_orders_are_stored_and_resume_after_a_restart(engine):
    """Orders larger than the participation limit become TWAP parents; a worker stopped mid-parent resumes
    it from parent_orders: the children's fills never exceed the parent and no child id repeats."""
    import sqlalchemy as sa

    account = f"oms-p-{uuid.uuid4().hex[:8]}"
    ticks = sim_ticks(120)
    first = _trader(account, participation=0.02)
    cut = None
    for i, t in enumerate(ticks):
        first.on_tick(t)
        if i % 200 == 0:
            _store(engine, first)
        if cut is None and first.oms.parents and any(a.filled > 0 for a, _ in first.oms.parents.values()):
            cut = i
            break
    assert cut is not None, "no parent order was started and partly filled"
    _store(engine, first)
    working = {pid: a.filled for pid, (a, _) in first.oms.parents.items()}

    second = _trader(account, participation=0.02)
    second.restore(_restored(engine, account))
    assert set(second.oms.parents) == set(working)  # resumed
    for pid, filled in working.items():
        assert second.oms.parents[pid][0].filled == filled
    for t in ticks[cut + 1:]:
        second.on_tick(t)
    _store(engine, second)

    with engine.begin() as conn:
        parents = conn.execute(sa.text("SELECT parent_id, algorithm, quantity, filled_quantity, status"
                                       " FROM parent_orders WHERE account=:a"), {"a": account}).fetchall()
        per_parent = dict(conn.execute(sa.text(
            "SELECT o.parent_id, sum(t.quantity) FROM trades t JOIN orders o USING (client_order_id)"
            " WHERE o.account=:a AND o.parent_id IS NOT NULL GROUP BY o.parent_id"), {"a": account}).fetchall())
    assert parents and {p[1] for p in parents} <= {"twap", "iceberg", "vwap"}
    for pid, _algo, qty, filled, status in parents:
        assert per_parent.get(pid, 0) <= qty
        assert filled == per_parent.get(pid, 0)
        assert status in ("working", "done", "canceled")
    assert any(p[0] in working and p[4] == "done" for p in parents), "the resumed parent did not finish"
