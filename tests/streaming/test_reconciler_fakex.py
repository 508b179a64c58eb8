"""Reconciliation end to end: the Binance adapter (streaming/venues, real ccxt 4.5.90) against the fake Binance
on 127.0.0.1 (tests/fakes), a real Trader and the real PostgreSQL.  No mock anywhere.

Before the worker starts, the account already has history the system of record has not seen: an order of
ours filled while no worker ran, an order of ours still resting, an order placed by hand on the exchange's
web site, and an order we recorded as sent that never reached the venue.  Then, with the worker running,
the user-data stream goes silent while the market fills our resting order, and later money arrives that no
fill explains."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal as D

import pytest
import sqlalchemy as sa

from storage import stream
from streaming.reconciler import ReconConfig, Reconciler, reconcile_at_start, ReconStore
from streaming.venues import BinanceVenue
from tests.fakes.binance import DEFAULT_KEY, DEFAULT_SECRET, FakeBinance, binance_client
from trading.oms.reconcile import fill_id_of, Tolerance, Verdict
from trading.records import NS_PER_S, OrderEvent, OrderRequest, OrderStatus, OrderType, Side
from trading.risk import TradingState

MODE = "live"
CFG = ReconConfig(Tolerance(relative=D("0.001"), halt_relative=D("0.02"), settle_ns=NS_PER_S // 5),
                  query_timeout_s=5.0, confirmations=2)


@pytest.fixture
def fake():
    f = FakeBinance()
    f.start()
    yield f
    f.stop()


def _trader(account: str):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    return Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=D(100000),
                  limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()}, mode=MODE)


def _record_sent(engine, account: str, cid: str, qty: str, price: str, vid: str | None, status: OrderStatus) -> None:
    ts = time.time_ns() - 60 * NS_PER_S
    with engine.begin() as conn:
        stream.write_batch(conn, mode=MODE, account=account, orders=[
            OrderRequest(cid, account, "t", "binance", "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D(price), ts=ts)],
            events=[OrderEvent(cid, account, "t", "BTC/USDT", status, D(0), D(qty), ts, None, vid)])


def _q(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).fetchall()]


def test_reconciliation_through_the_binance_adapter_and_the_fake_exchange(fake, engine):
    account = f"fx-{uuid.uuid4().hex[:8]}"
    cid_filled, cid_resting, cid_lost = f"{account}-a", f"{account}-b", f"{account}-lost"

    async def before_the_worker(ex):
        await ex.load_markets()
        a = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 49000, {"clientOrderId": cid_filled})
        b = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 48000, {"clientOrderId": cid_resting})
        await ex.create_order("BTC/USDT", "limit", "sell", 0.01, 60000, {"clientOrderId": "web_manual_1"})
        return a["id"], b["id"]

    async def client(body):
        ex = binance_client(fake.base_url, DEFAULT_KEY, DEFAULT_SECRET)
        try:
            return await body(ex)
        finally:
            await ex.close()

    vid_a, vid_b = asyncio.run(client(before_the_worker))
    _record_sent(engine, account, cid_filled, "0.01", "49000", vid_a, OrderStatus.ACKNOWLEDGED)
    _record_sent(engine, account, cid_resting, "0.01", "48000", vid_b, OrderStatus.ACKNOWLEDGED)
    _record_sent(engine, account, cid_lost, "0.01", "47000", None, OrderStatus.UNKNOWN)  # the request never arrived
    (fill_a,) = fake.trade("BTC/USDT", "48900", "0.01")  # fills ours at 49000; no worker listens: nobody hears it
    orders_at_venue = len(fake.books()["orders"])
    trader = _trader(account)
    store = ReconStore(engine, mode=MODE, exchange="binance")

    async def worker():
        venue = BinanceVenue(account=account, api_key=DEFAULT_KEY, secret=DEFAULT_SECRET, symbols=["BTC/USDT"],
                             api_url=fake.base_url, timeout_s=3.0, rate_limit_ms=0, strategy_default="t")
        await venue.start()
        try:
            start = await reconcile_at_start(venue, trader, store, CFG)
            rc = Reconciler(venue, trader, store, CFG, since_ns=start.reconciliation.ts)
            # the user-data stream goes quiet; the market fills our resting order meanwhile
            fake.fault("ws_silent", count=None, duration=30)
            fake.trade("BTC/USDT", "47900", "0.01")
            await asyncio.sleep(0.3)  # past the settle window
            periodic = await rc.run_once(balances=True)
            # money arrives that no fill explains: confirmed on the second balance run
            usdt = D(fake.books()["balances"][DEFAULT_KEY]["USDT"]["free"])
            fake.set_balance("USDT", usdt + 5000)
            first = await rc.run_once(balances=True)
            state_after_first = trader.state
            second = await rc.run_once(balances=True)
            return start, periodic, first, state_after_first, second
        finally:
            await venue.close()

    start, periodic, first, state_after_first, second = asyncio.run(worker())

    # start: every kind of difference found, recorded, the account opened for trading
    assert start.verdict is Verdict.OK, start.reason
    assert start.reconciliation.counts() == {"missed_fill": 1, "status_mismatch": 1, "external_order": 1,
                                             "unknown_at_venue": 1}
    assert _q(engine, "SELECT status, reason FROM orders WHERE client_order_id=:c", c=cid_lost) == [
        ("rejected", "not_found_at_venue")]
    assert _q(engine, "SELECT status, filled_quantity FROM orders WHERE client_order_id=:c", c=cid_filled) == [
        ("filled", D("0.01"))]
    assert _q(engine, "SELECT client_order_id, strategy, side FROM orders WHERE account=:a AND external",
              a=account) == [("web_manual_1", "external", "sell")]
    assert _q(engine, "SELECT fill_id FROM trades WHERE account=:a AND client_order_id=:c", a=account,
              c=cid_filled) == [(fill_id_of("binance", str(fill_a.trade_id)),)]
    assert _q(engine, "SELECT count(*) FROM balance_baselines WHERE account=:a", a=account)[0][0] >= 2

    # periodic: the fill made while the stream was silent is recorded and booked
    assert periodic.verdict is Verdict.OK, periodic.reason
    assert [d.kind.value for d in periodic.differences if d.kind.value == "missed_fill"] == ["missed_fill"]
    assert trader.portfolio.position("BTC/USDT").quantity == D("0.02")
    assert _q(engine, "SELECT status FROM orders WHERE client_order_id=:c", c=cid_resting) == [("filled",)]

    # the deposit: seen once (waits for confirmation), then the account halts (5000 USDT is far past 2 %)
    assert first.verdict is Verdict.OK and "to confirm" in first.reason and state_after_first is TradingState.ACTIVE
    assert second.verdict is Verdict.HALTED and trader.state is TradingState.HALTED and "USDT" in second.reason
    assert _q(engine, "SELECT count(*) FROM audit_log WHERE scope=:s AND action='reconciliation'",
              s=f"account:{account}") == [(1,)]
    # reconciliation never sent anything: the venue holds the same orders, none of ours accepted twice
    assert len(fake.books()["orders"]) == orders_at_venue
    assert fake.accepted_count(cid_lost) == 0 and fake.accepted_count(cid_filled) == 1


class _Gated:
    """The adapter, its snapshot held until the test opens the gate (the venue is slow to answer)."""

    def __init__(self, venue) -> None:
        self.venue, self.account, self.gate, self.asked = venue, venue.account, asyncio.Event(), 0
        self.query, self.poll = venue.query, venue.poll

    async def snapshot(self, since_ns: int):
        self.asked += 1
        await self.gate.wait()
        return await self.venue.snapshot(since_ns)


def test_no_order_reaches_the_exchange_before_the_start_reconciliation_is_ok(fake, engine):
    from tests.streaming.conftest import sim_ticks
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    account = f"fg-{uuid.uuid4().hex[:8]}"
    fake.set_price("BTC/USDT", "42000")
    btc = next(i for i in SimVenue(SimConfig(seed=7)).instruments() if i.symbol == "BTC/USDT")
    ticks = [t for t in sim_ticks(240) if t.symbol == "BTC/USDT"]
    store = ReconStore(engine, mode=MODE, exchange="binance")

    async def worker():
        venue = BinanceVenue(account=account, api_key=DEFAULT_KEY, secret=DEFAULT_SECRET, symbols=["BTC/USDT"],
                             api_url=fake.base_url, timeout_s=3.0, rate_limit_ms=0)
        await venue.start()
        try:
            trader = Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=D(100000),
                            limits=RiskLimits(), instruments={"BTC/USDT": btc}, exchange="binance", mode=MODE,
                            venue=venue)
            gated = _Gated(venue)
            start = asyncio.create_task(reconcile_at_start(gated, trader, store, CFG))
            while not gated.asked:
                await asyncio.sleep(0.01)
            for t in ticks[: len(ticks) // 2]:
                trader.on_tick(t)
            held = trader.drain()
            trader.release()  # what the OMS would send after a commit
            await asyncio.sleep(0.3)
            at_venue_while_held = len(fake.books()["orders"])
            refused = dict(trader.engine.rejected)
            gated.gate.set()
            outcome = await start
            for t in ticks[len(ticks) // 2:]:
                trader.on_tick(t)
            after = trader.drain()
            trader.release()
            deadline = time.monotonic() + 5
            while len(fake.books()["orders"]) < len(after.orders) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return held, at_venue_while_held, refused, outcome, after, len(fake.books()["orders"])
        finally:
            await venue.close()

    held, at_venue_while_held, refused, outcome, after, at_venue = asyncio.run(worker())
    assert held.orders == [] and at_venue_while_held == 0 and refused  # decisions made, all refused by risk
    assert outcome.verdict is Verdict.OK, outcome.reason
    assert after.orders and at_venue == len(after.orders)  # once open, the orders do reach the exchange
    assert all(fake.accepted_count(o.client_order_id) == 1 for o in after.orders)


def test_a_fill_of_an_order_whose_venue_id_was_never_stored_is_booked_to_that_order(fake, engine):
    """The worker sent an order and was killed before it stored the venue's id (the row says 'submitting', no
    venue id); the exchange filled it.  At the restart the venue's trade names only its venue order id: the
    start reconciliation asks about our order, learns its id from the answer and books the fill to it --
    never to an "external" order of the same id."""
    account = f"fx-{uuid.uuid4().hex[:8]}"
    cid = f"{account}-killed"
    store = ReconStore(engine, mode=MODE, exchange="binance")

    def venue():
        return BinanceVenue(account=account, api_key=DEFAULT_KEY, secret=DEFAULT_SECRET, symbols=["BTC/USDT"],
                            api_url=fake.base_url, timeout_s=3.0, rate_limit_ms=0, strategy_default="t")

    async def start(trader):
        v = venue()
        await v.start()
        try:
            return await reconcile_at_start(v, trader, store, CFG)
        finally:
            await v.close()

    assert asyncio.run(start(_trader(account))).verdict is Verdict.OK  # the first start adopts the balances

    async def send(ex):
        await ex.load_markets()
        return await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 49000, {"clientOrderId": cid})

    ex = binance_client(fake.base_url, DEFAULT_KEY, DEFAULT_SECRET)
    try:
        asyncio.run(send(ex))
    finally:
        asyncio.run(ex.close())
    _record_sent(engine, account, cid, "0.01", "49000", None, OrderStatus.SUBMITTING)
    (fill,) = fake.trade("BTC/USDT", "48900", "0.01")

    outcome = asyncio.run(start(_trader(account)))
    assert outcome.verdict is Verdict.OK, outcome.reason
    assert "external_trade" not in outcome.reconciliation.counts()
    assert _q(engine, "SELECT client_order_id, quantity FROM trades WHERE account=:a", a=account) == [
        (cid, D("0.01"))]
    assert _q(engine, "SELECT fill_id FROM trades WHERE account=:a", a=account) == [
        (fill_id_of("binance", str(fill.trade_id)),)]
    assert _q(engine, "SELECT status, filled_quantity, venue_order_id IS NOT NULL FROM orders WHERE account=:a",
              a=account) == [("filled", D("0.01"), True)]
