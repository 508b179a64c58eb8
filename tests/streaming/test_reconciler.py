"""streaming.reconciler with a real Trader and the real PostgreSQL; the venue is an in-memory stand-in of a
live adapter's reconciliation side (snapshot / query / poll of the PLAN's LiveVenue port), not of ccxt.

What is proven: nothing trades before the start reconciliation is ok; an exception halts with its reason;
missed fills are recorded and booked; an order the venue does not show is queried (never re-sent) and
recorded from the answer; balance drift reduces or halts by size; a periodic run catches a fill made
while nobody looked; a periodic difference must be confirmed; failures in a row halt; nothing is ever
submitted or canceled by reconciliation."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal as D

import pytest
import sqlalchemy as sa

from storage import stream
from streaming.reconciler import (
    HALT, ReconConfig, Reconciler, reconcile_at_start, ReconStore, START, start_and_watch,
)
from tests.streaming.conftest import sim_ticks
from trading.oms.reconcile import Tolerance, Verdict, VenueOrder, VenueSnapshot, VenueTrade
from trading.records import (
    Fill, Liquidity, NS_PER_S, OrderEvent, OrderRequest, OrderStatus, OrderType, Side,
)
from trading.risk import TradingState

EX = "binance"
MODE = "live"
CFG = ReconConfig(Tolerance(relative=D("0.001"), halt_relative=D("0.02")), query_timeout_s=2.0,
                  confirmations=2, max_failures=3)


class MemoryVenue:
    """Orders, trades and balances of one account, as a venue would report them."""

    external = True

    def __init__(self, account: str) -> None:
        self.account = account
        self.orders: dict[str, VenueOrder] = {}  # venue order id -> order (open or not)
        self.trades: list[VenueTrade] = []
        self.balances: dict[str, D] = {"USDT": D(10000)}
        self.queue: list[OrderEvent | Fill] = []
        self.queries: list[str] = []
        self.snapshots: list[int] = []
        self.sent: list[str] = []  # submit / cancel / replace calls: reconciliation must make none
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.lag_s = 0.0  # the snapshot's time this far in the past (a start that happened earlier)

    async def snapshot(self, since_ns: int) -> VenueSnapshot:
        self.snapshots.append(since_ns)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return VenueSnapshot(time.time_ns() - int(self.lag_s * NS_PER_S),
                             [o for o in self.orders.values() if o.status.is_open],
                             [t for t in self.trades if t.ts >= since_ns], dict(self.balances))

    def query(self, client_order_id: str, symbol: str, ts: int) -> None:
        self.queries.append(client_order_id)
        o = next((o for o in self.orders.values() if o.client_order_id == client_order_id), None)
        if o is None:
            self.queue.append(OrderEvent(client_order_id, self.account, "", symbol, OrderStatus.REJECTED, D(0), D(0),
                                         ts, "not_found_at_venue"))
        else:
            self.queue.append(OrderEvent(client_order_id, self.account, "", symbol, o.status, o.filled_quantity,
                                         o.quantity - o.filled_quantity, ts, None, o.venue_order_id))

    def poll(self) -> list:
        out, self.queue = self.queue, []
        return out

    def submit(self, order):  # pragma: no cover - a call is the failure
        self.sent.append(f"submit {order.client_order_id}")
        return []

    def cancel(self, client_order_id, ts):  # pragma: no cover
        self.sent.append(f"cancel {client_order_id}")
        return []

    # -- the test's hand on the venue --
    def rest(self, cid: str, vid: str, qty: str = "0.1", filled: str = "0",
             status: OrderStatus = OrderStatus.ACKNOWLEDGED) -> None:
        self.orders[vid] = VenueOrder(cid, vid, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D(100), status,
                                      D(filled),
                                      time.time_ns() - 60 * NS_PER_S)

    def trade(self, tid: str, vid: str, qty: str, age_s: float = 30) -> None:
        self.trades.append(VenueTrade(tid, None, vid, "BTC/USDT", Side.BUY, D(100), D(qty), D("0.01"), "USDT",
                                      Liquidity.MAKER, time.time_ns() - int(age_s * NS_PER_S)))
        self.balances["USDT"] -= D(100) * D(qty) + D("0.01")
        self.balances["BTC"] = self.balances.get("BTC", D(0)) + D(qty)


def _trader(account: str):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    return Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=D(100000),
                  limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()}, mode=MODE)


def _ours(engine, account: str, cid: str, vid: str | None, qty: str = "0.1", age_s: float = 60) -> None:
    """An order of ours, stored and acknowledged (its intent and its venue id)."""
    ts = time.time_ns() - int(age_s * NS_PER_S)
    with engine.begin() as conn:
        stream.write_batch(conn, mode=MODE, account=account, orders=[
            OrderRequest(cid, account, "t", EX, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D(100), ts=ts)],
            events=[OrderEvent(cid, account, "t", "BTC/USDT", OrderStatus.ACKNOWLEDGED, D(0), D(qty), ts, None, vid)])


def _q(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).fetchall()]


@pytest.fixture
def setup(engine):
    account = f"rr-{uuid.uuid4().hex[:8]}"
    store = ReconStore(engine, mode=MODE, exchange=EX)
    return account, MemoryVenue(account), _trader(account), store


def _uid(account: str, name: str) -> str:
    return f"{account}-{name}"  # ids unique per test: the tests share one database


def test_nothing_trades_before_the_start_reconciliation_is_ok(setup):
    account, venue, trader, store = setup
    ticks = sim_ticks(120)
    venue.gate = asyncio.Event()

    async def scenario():
        task = asyncio.create_task(reconcile_at_start(venue, trader, store, CFG))
        while not venue.snapshots:
            await asyncio.sleep(0.01)
        assert trader.state is TradingState.HALTED and trader.risk.held(START) is TradingState.HALTED
        for t in ticks[: len(ticks) // 2]:  # the market moves while the venue has not answered
            trader.on_tick(t)
        waiting = trader.drain()
        venue.gate.set()
        return waiting, await task

    waiting, outcome = asyncio.run(scenario())
    assert waiting.orders == [] and waiting.fills == []
    assert trader.engine.rejected, "the strategy wanted to trade and was refused"
    assert [(t.old, t.new, t.who) for t in waiting.transitions] == [(TradingState.ACTIVE, TradingState.HALTED,
                                                                     "reconciler")]
    assert outcome.verdict is Verdict.OK and trader.state is TradingState.ACTIVE
    for t in ticks[len(ticks) // 2:]:
        trader.on_tick(t)
    after = trader.drain()
    assert after.orders, "trading starts once the venue and the books agree"
    assert after.transitions[0].new is TradingState.ACTIVE and "start reconciliation ok" in after.transitions[0].reason
    assert venue.sent == []


def test_an_exception_in_the_snapshot_halts_with_the_reason(setup, engine):
    account, venue, trader, store = setup
    venue.fail = TimeoutError("GET https://127.0.0.1:1/api/v3/openOrders?timestamp=1&signature=deadbeef timed out")
    outcome = asyncio.run(reconcile_at_start(venue, trader, store, CFG))
    assert outcome.verdict is Verdict.HALTED and trader.state is TradingState.HALTED
    assert outcome.reason.startswith("start reconciliation failed: TimeoutError")
    assert "deadbeef" not in outcome.reason and "signature=<redacted>" in outcome.reason
    assert trader.risk.held(HALT) is TradingState.HALTED and trader.risk.held(START) is None
    assert _q(engine, "SELECT kind, verdict, reason FROM reconciliation_runs WHERE account=:a", a=account) == [
        ("start", "halted", outcome.reason)]
    assert _q(engine, "SELECT actor, action FROM audit_log WHERE scope=:s", s=f"account:{account}") == [
        ("reconciler", "reconciliation")]
    for t in sim_ticks(60):
        trader.on_tick(t)
    assert trader.drain().orders == []


def test_start_records_and_books_a_fill_missed_while_no_worker_ran(setup, engine):
    account, venue, trader, store = setup
    cid, vid = _uid(account, "o1"), _uid(account, "v1")
    _ours(engine, account, cid, vid)
    venue.rest(cid, vid, filled="0.1", status=OrderStatus.FILLED)  # filled, so no longer open at the venue
    venue.trade(_uid(account, "t1"), vid, "0.1")
    outcome = asyncio.run(reconcile_at_start(venue, trader, store, CFG))
    assert outcome.verdict is Verdict.OK, outcome.reason
    assert outcome.reconciliation.counts() == {"missed_fill": 1, "status_mismatch": 1}
    assert trader.portfolio.position("BTC/USDT").quantity == D("0.1")  # booked in the Trader
    assert _q(engine, "SELECT client_order_id, quantity, mode FROM trades WHERE account=:a", a=account) == [
        (cid, D("0.1"), MODE)]
    assert _q(engine, "SELECT status, filled_quantity FROM orders WHERE client_order_id=:c", c=cid) == [
        ("filled", D("0.1"))]
    # the first successful start adopted the venue's balances
    assert _q(engine, "SELECT asset, quantity FROM balance_baselines WHERE account=:a ORDER BY asset", a=account) == [
        ("BTC", D("0.1")), ("USDT", D("9989.99"))]


def test_an_order_the_oms_restored_follows_the_venue_and_is_journalled_once(setup, engine):
    from streaming.trader import Restored

    account, venue, trader, store = setup
    cid, vid = _uid(account, "o9"), _uid(account, "v9")
    _ours(engine, account, cid, vid)
    req = OrderRequest(cid, account, "t", EX, "BTC/USDT", Side.BUY, OrderType.LIMIT, D("0.1"), D(100))
    trader.restore(Restored(known_order_ids={cid}, open_orders=[(req, OrderStatus.ACKNOWLEDGED, D(0), vid)]))
    assert cid in trader.oms.orders  # open, to be asked about
    venue.rest(cid, vid, filled="0.1", status=OrderStatus.FILLED)
    venue.trade(_uid(account, "t9"), vid, "0.1")
    assert asyncio.run(reconcile_at_start(venue, trader, store, CFG)).verdict is Verdict.OK
    assert cid not in trader.oms.orders and trader.oms.closed[cid].status is OrderStatus.FILLED
    batch = trader.drain()
    assert [(e.client_order_id, e.status) for e in batch.events] == [(cid, OrderStatus.FILLED)]  # the OMS journals it
    assert batch.fills == []  # stored by the reconciliation already
    assert [p.quantity for p in batch.positions] == [D("0.1")]
    # the run updated the order's row and left its journal to the OMS
    assert _q(engine, "SELECT status FROM orders WHERE client_order_id=:c", c=cid) == [("filled",)]
    assert _q(engine, "SELECT status FROM order_events WHERE client_order_id=:c ORDER BY event_no", c=cid) == [
        ("ack",)]


def test_an_order_unknown_at_the_venue_is_queried_and_recorded_rejected_never_resent(setup, engine):
    account, venue, trader, store = setup
    cid = _uid(account, "lost")
    _ours(engine, account, cid, None)  # sent before a crash; the venue never got it
    outcome = asyncio.run(reconcile_at_start(venue, trader, store, CFG))
    assert venue.queries == [cid] and venue.sent == []
    assert outcome.verdict is Verdict.OK, outcome.reason
    assert [d.kind.value for d in outcome.reconciliation.differences] == ["unknown_at_venue"]
    assert _q(engine, "SELECT status, reason FROM orders WHERE client_order_id=:c", c=cid) == [
        ("rejected", "not_found_at_venue")]
    assert trader.state is TradingState.ACTIVE


@pytest.mark.parametrize("usdt, state", [("9950", TradingState.REDUCING), ("8000", TradingState.HALTED)])
def test_balance_drift_at_a_restart_reduces_or_halts_with_an_alert_and_an_audit_row(setup, engine, usdt, state):
    account, venue, trader, store = setup
    assert asyncio.run(reconcile_at_start(venue, trader, store, CFG)).verdict is Verdict.OK  # adopts the baseline
    venue.balances["USDT"] = D(usdt)  # money left the account: not through any fill
    restarted = _trader(account)
    outcome = asyncio.run(reconcile_at_start(venue, restarted, store, CFG))
    assert outcome.verdict.value == state.value and restarted.state is state
    assert "USDT: venue" in outcome.reason
    alerts = restarted.drain().transitions
    assert alerts[-1].new is state and "USDT: venue" in alerts[-1].reason and alerts[-1].who == "reconciler"
    (audit,) = _q(engine, "SELECT reason, details FROM audit_log WHERE scope=:s AND action='reconciliation'",
                  s=f"account:{account}")
    assert audit[0] == outcome.reason and audit[1]["verdict"] == state.value
    assert venue.sent == [] and outcome.reconciliation.proposals == ()  # no trade proposed, none sent
    assert _q(engine, "SELECT proposals FROM reconciliation_runs WHERE account=:a AND verdict<>'ok'",
              a=account) == [([],)]


def test_a_periodic_run_catches_a_fill_made_while_the_worker_was_not_looking(setup, engine):
    account, venue, trader, store = setup
    cid, vid = _uid(account, "o3"), _uid(account, "v3")
    _ours(engine, account, cid, vid)
    venue.rest(cid, vid)
    venue.lag_s = 20  # the worker started 20 s ago
    assert asyncio.run(reconcile_at_start(venue, trader, store, CFG)).verdict is Verdict.OK
    assert trader.portfolio.position("BTC/USDT").quantity == 0
    venue.lag_s = 0
    rc = Reconciler(venue, trader, store, CFG, since_ns=venue.snapshots[-1])
    # the user-data stream dropped: the venue filled half the order and nothing reached the worker
    venue.rest(cid, vid, filled="0.05", status=OrderStatus.PARTIALLY_FILLED)
    venue.trade(_uid(account, "t3"), vid, "0.05", age_s=10)
    rec = asyncio.run(rc.run_once(balances=True))
    assert rec.verdict is Verdict.OK, rec.reason
    assert trader.portfolio.position("BTC/USDT").quantity == D("0.05")
    assert _q(engine, "SELECT client_order_id, quantity FROM trades WHERE account=:a", a=account) == [(cid, D("0.05"))]
    assert _q(engine, "SELECT status, filled_quantity FROM orders WHERE client_order_id=:c", c=cid) == [
        ("partially_filled", D("0.05"))]
    # the same state again: nothing new, balances agree with the fills
    again = asyncio.run(rc.run_once(balances=True))
    assert again.differences == () and trader.state is TradingState.ACTIVE
    # a trade younger than the settle window is left to the stream this time
    venue.trade(_uid(account, "t4"), vid, "0.05", age_s=0)
    venue.rest(cid, vid, filled="0.1", status=OrderStatus.FILLED)
    assert asyncio.run(rc.run_once(balances=False)).differences == ()
    assert venue.sent == []


def test_a_periodic_difference_changes_the_state_only_when_confirmed(setup):
    account, venue, trader, store = setup
    assert asyncio.run(reconcile_at_start(venue, trader, store, CFG)).verdict is Verdict.OK
    rc = Reconciler(venue, trader, store, CFG, since_ns=venue.snapshots[-1])
    venue.balances["USDT"] = D(9950)
    first = asyncio.run(rc.run_once(balances=True))
    assert first.verdict is Verdict.OK and "to confirm" in first.reason and trader.state is TradingState.ACTIVE
    assert asyncio.run(rc.run_once(balances=False)).verdict is Verdict.OK  # an orders-only run keeps the count
    second = asyncio.run(rc.run_once(balances=True))
    assert second.verdict is Verdict.REDUCING and trader.state is TradingState.REDUCING


def test_an_order_the_oms_is_still_establishing_counts_only_after_its_grace(setup, engine):
    """A worker killed mid-send leaves an order 'submitting'; the restarted OMS asks the venue about it.
    Until the answer comes (within recon_resolve_grace_s) the periodic runs list and query it without
    holding it against the account; past the grace it reduces, as any order lost track of."""
    from dataclasses import replace

    from streaming.trader import Restored

    account, venue, trader, store = setup
    cid = _uid(account, "inflight")
    ts = time.time_ns() - 60 * NS_PER_S
    req = OrderRequest(cid, account, "t", EX, "BTC/USDT", Side.BUY, OrderType.LIMIT, D("0.1"), D(100), ts=ts)
    with engine.begin() as conn:
        stream.write_batch(conn, mode=MODE, account=account, orders=[req], events=[
            OrderEvent(cid, account, "t", "BTC/USDT", OrderStatus.SUBMITTING, D(0), D("0.1"), ts)])
    trader.restore(Restored(known_order_ids={cid}, open_orders=[(req, OrderStatus.SUBMITTING, D(0), None)]))
    assert set(trader.oms.in_flight()) == {cid}
    since = time.time_ns() - 120 * NS_PER_S
    rc = Reconciler(venue, trader, store, CFG, since_ns=since)
    for _ in range(CFG.confirmations + 1):
        rec = asyncio.run(rc.run_once(balances=False))
        assert rec.verdict is Verdict.OK and trader.state is TradingState.ACTIVE, rec.reason
        (diff,) = rec.differences
        assert diff.kind.value == "unknown_at_venue" and "the OMS has been establishing it" in diff.detail
    assert cid in venue.queries and venue.sent == []
    strict = Reconciler(venue, trader, store, replace(CFG, resolve_grace_s=0), since_ns=since)
    asyncio.run(strict.run_once(balances=False))
    rec = asyncio.run(strict.run_once(balances=False))
    assert rec.verdict is Verdict.REDUCING and trader.state is TradingState.REDUCING, rec.reason
    assert cid in rec.reason


def test_periodic_failures_in_a_row_halt_the_account(setup, engine):
    account, venue, trader, store = setup
    assert asyncio.run(reconcile_at_start(venue, trader, store, CFG)).verdict is Verdict.OK
    rc = Reconciler(venue, trader, store, CFG)
    venue.fail = ConnectionError("venue unreachable")
    for _ in range(CFG.max_failures - 1):
        assert asyncio.run(rc.run_once()) is None
    assert trader.state is TradingState.ACTIVE  # a hiccup is not a halt
    assert asyncio.run(rc.run_once()) is None
    assert trader.state is TradingState.HALTED and "3 runs in a row" in trader.drain().transitions[-1].reason
    assert _q(engine, "SELECT kind, verdict FROM reconciliation_runs WHERE account=:a ORDER BY ts", a=account) == [
        ("start", "ok"), ("periodic", "halted")]


def test_config_from_settings_and_bad_settings():
    from deploy.settings import Settings
    from trading.oms.reconcile import ReconcileInputError

    cfg = ReconConfig.from_settings(Settings(_env_file=None))
    assert (cfg.orders_interval_s, cfg.balances_interval_s, cfg.tolerance.relative) == (5.0, 60.0, D("0.001"))
    assert cfg.fix_with_trades is False
    with pytest.raises(ReconcileInputError, match="TRADELOOP_RECON_BALANCE_"):
        ReconConfig.from_settings(Settings(_env_file=None, recon_balance_tolerance=0.1, recon_balance_halt=0.01))


def test_the_periodic_task_checks_orders_often_and_balances_when_due(setup, engine):
    account, venue, trader, store = setup
    cfg = ReconConfig(CFG.tolerance, orders_interval_s=0.05, balances_interval_s=0.25)

    async def scenario():
        outcome, rc, task = await start_and_watch(venue, trader, store, cfg)
        try:
            while rc.counters["runs_ok"] < 8:
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
        return outcome, rc

    outcome, rc = asyncio.run(scenario())
    assert outcome.verdict is Verdict.OK and rc.last_ts is not None
    assert len(venue.snapshots) >= 9  # the start's and the periodic runs'
    runs = _q(engine, "SELECT kind FROM reconciliation_runs WHERE account=:a", a=account)
    # clean orders-only runs are counted, not stored; balance runs are (the first at once, then every 0.25 s)
    assert 2 <= sum(1 for (k,) in runs if k == "periodic") < rc.counters["runs_ok"]
