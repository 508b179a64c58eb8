"""IBVenue with the REAL ib_async client against the fake TWS / IB Gateway (tests/fakes/ib.py) on 127.0.0.1:
orders end to end, fills once, cancel, a 201 reject, a dropped connection with fills missed meanwhile, query by
our client id (orderRef), snapshot.  Timeouts are short (constructor parameters)."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal

import pytest

from streaming.venues.ib import IBVenue
from tests.fakes.ib import ACCOUNT, FakeIB
from tests.streaming.venues.helpers import final, short, status_of, until
from trading.records import Fill, Liquidity, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, stable_id

D = Decimal
FAST = dict(timeout_s=2.0, housekeeping_s=0.05, reconnect_base_s=0.05, reconnect_max_s=0.2, fill_grace_s=0.2,
            unreachable_halt_s=30.0)
_client_ids = itertools.count(11)


@pytest.fixture
def fake():
    f = FakeIB()
    f.start()
    yield f
    f.stop()


def make(fake, **kw) -> IBVenue:
    return IBVenue(account="ibacct", symbols=["AAPL/USD"], host=fake.host, port=fake.port,
                   client_id=kw.pop("client_id", next(_client_ids)), **{**FAST, **kw})


def run(fake, body, **kw):
    async def main():
        venue = make(fake, **kw)
        await venue.start()
        try:
            return await body(venue)
        finally:
            await venue.close()
    return asyncio.run(main())


def req(cid, side=Side.BUY, qty="10", price=None, **kw) -> OrderRequest:
    order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
    return OrderRequest(cid, "ibacct", "strat", "ib", "AAPL/USD", side, order_type, D(qty),
                        D(price) if price is not None else None, ts=time.time_ns(), **kw)


def fills_of(events, cid=None):
    return [e for e in events if isinstance(e, Fill) and (cid is None or e.client_order_id == cid)]


def test_market_order_acked_filled_each_fill_once_with_commission(fake):
    async def body(v):
        assert v.submit(req("m1")) == []
        events = await until(v, final("m1"))
        await v.resync("test")  # the same execution again over reqExecutions: not reported twice
        await asyncio.sleep(0.1)
        return events + v.poll()

    events = run(fake, body)
    assert status_of(events, "m1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    (fill,) = fills_of(events)
    (venue_fill,) = fake.fills()
    exec_id = f"0000e0d5.{venue_fill['trade_id']:08x}.01.01"
    assert fill.fill_id == stable_id("fill", "ib", exec_id)
    assert (fill.quantity, fill.price, fill.side, fill.fee, fill.fee_currency) == (
        D("10"), D("200"), Side.BUY, D("1"), "USD")
    assert fill.liquidity is Liquidity.TAKER
    assert events.index(fill) < len(events) - 1 and events[-1].status is OrderStatus.FILLED
    assert events[-1].filled_quantity == D("10") and events[0].venue_order_id == str(venue_fill["order_id"])
    order = fake.orders()["m1"]
    assert order["order_ref"] == "m1" and isinstance(order["ib_order_id"], int) and fake.placed("m1") == 1


def test_limit_order_rests_then_fills_in_two_parts_as_maker(fake):
    async def body(v):
        v.submit(req("l1", qty="20", price="195.50"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "l1"))
        assert [o.client_order_id for o in v.open_orders()] == ["l1"]
        fake.trade("AAPL/USD", "195.40", "5")
        await until(v, lambda evs: OrderStatus.PARTIALLY_FILLED in status_of(evs, "l1"), events=events)
        fake.trade("AAPL/USD", "195.00", "100")
        return await until(v, final("l1"), events=events)

    events = run(fake, body)
    assert status_of(events, "l1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    fills = fills_of(events)
    assert [f.quantity for f in fills] == [D("5"), D("15")]
    assert all(f.price == D("195.50") and f.liquidity is Liquidity.MAKER for f in fills)
    assert fake.orders()["l1"]["tif"] == "GTC" and fake.orders()["l1"]["type"] == "LIMIT"


def test_cancel(fake):
    async def body(v):
        v.submit(req("c1", price="150.00"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "c1"))
        assert v.cancel("c1", time.time_ns()) == []
        return await until(v, final("c1"), events=events)

    events = run(fake, body)
    assert status_of(events, "c1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.CANCELED]
    assert fake.orders()["c1"]["status"] == "CANCELED" and not fills_of(events)


def test_rejects_201_and_refusals_before_sending(fake):
    fake.fault("reject", reason="YOUR ORDER IS NOT ACCEPTED. ... MUST EXCEED THE INITIAL MARGIN")

    async def body(v):
        v.submit(req("r1"))
        v.submit(req("r2", qty="1.5"))  # whole shares only: refused here, never sent
        v.submit(req("r3", price="100.001"))
        events = await until(v, lambda evs: all(final(c)(evs) for c in ("r1", "r2", "r3")))
        fake.set_balance("USD", "10")  # the matcher refuses for want of funds: 201 again
        v.submit(req("r4"))
        return await until(v, final("r4"), events=events)

    events = run(fake, body)
    got = {e.client_order_id: (e.status, e.reason) for e in events if isinstance(e, OrderEvent)}
    assert got == {"r1": (OrderStatus.REJECTED, "insufficient_funds"), "r2": (OrderStatus.REJECTED, "lot_size"),
                   "r3": (OrderStatus.REJECTED, "invalid_price"), "r4": (OrderStatus.REJECTED, "insufficient_funds")}
    assert [status_of(events, c) for c in ("r1", "r4")] == [[OrderStatus.REJECTED]] * 2
    assert fake.placed("r2") == fake.placed("r3") == 0


def test_dropped_connection_reconnects_and_fetches_fills_missed_meanwhile(fake):
    async def body(v):
        v.submit(req("d1", qty="10", price="190.00"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "d1"))
        connects = v.connects
        fake.refuse(True)
        fake.drop()
        await until(v, lambda evs: v.health()[0] == "degraded", events=events)
        assert "venue_unreachable" in v.health()[1]
        fake.trade("AAPL/USD", "189.00", "4")  # fills while nobody listens
        fake.trade("AAPL/USD", "189.00", "6")
        await asyncio.sleep(0.3)
        assert not fills_of(events + v.poll())
        fake.refuse(False)
        events = await until(v, final("d1"), events=events)
        assert v.connects == connects + 1 and v.health() == ("ok", None)
        return events

    events = run(fake, body)
    assert [f.quantity for f in fills_of(events)] == [D("4"), D("6")]
    assert status_of(events, "d1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert len({f.fill_id for f in fills_of(events)}) == 2 and fake.placed("d1") == 1


def test_unreachable_past_the_limit_halts_then_recovers_cancelling_open_orders(fake):
    async def body(v):
        v.submit(req("h1", price="150.00"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "h1"))
        fake.refuse(True)
        fake.drop()
        await until(v, lambda evs: v.health()[0] == "halt", events=events)
        v.submit(req("h2"))
        await until(v, final("h2"), events=events)
        fake.refuse(False)
        await until(v, final("h1"), events=events)
        await until(v, lambda evs: v.health()[0] == "ok", events=events)
        return events

    events = run(fake, body, unreachable_halt_s=0.2)
    assert [(e.status, e.reason) for e in events if e.client_order_id == "h2"] == [
        (OrderStatus.REJECTED, "venue_unreachable")]
    assert status_of(events, "h1")[-1] is OrderStatus.CANCELED and fake.orders()["h1"]["status"] == "CANCELED"
    assert fake.placed("h2") == 0


def test_query_by_client_id_after_restart_and_not_found(fake):
    async def first(v):
        v.submit(req("q1", qty="3"))
        v.submit(req("q2", qty="5", price="150.00"))
        return await until(v, lambda evs: final("q1")(evs) and OrderStatus.ACKNOWLEDGED in status_of(evs, "q2"))

    run(fake, first)

    async def second(v):  # a new process (other client id): knows nothing but our client ids
        v.query("q1", "AAPL/USD", 0)
        v.query("q2", "AAPL/USD", 0)
        v.query("nope", "AAPL/USD", 0)
        return await until(v, lambda evs: final("q1")(evs) and final("nope")(evs)
                           and OrderStatus.ACKNOWLEDGED in status_of(evs, "q2"))

    events = run(fake, second)
    assert status_of(events, "q1")[-1] is OrderStatus.FILLED and [f.quantity for f in fills_of(events, "q1")] == [D(3)]
    assert status_of(events, "q2") == [OrderStatus.ACKNOWLEDGED]
    assert [(e.status, e.reason) for e in events if e.client_order_id == "nope"] == [
        (OrderStatus.REJECTED, "not_found_at_venue")]
    assert fake.placed("q1") == fake.placed("q2") == 1, [short(e) for e in events]


def test_snapshot_open_orders_trades_and_balances(fake):
    start = time.time_ns()

    async def body(v):
        v.submit(req("s1", qty="10"))
        v.submit(req("s2", qty="4", price="150.00"))
        await until(v, lambda evs: final("s1")(evs) and OrderStatus.ACKNOWLEDGED in status_of(evs, "s2"))
        await asyncio.sleep(0.1)  # the cash update follows the fill
        return await v.snapshot(start)

    snap = run(fake, body)
    (order,) = snap.open_orders
    assert (order.client_order_id, order.symbol, order.side, order.order_type, order.quantity, order.price,
            order.status, order.filled_quantity) == ("s2", "AAPL/USD", Side.BUY, OrderType.LIMIT, D(4), D(150),
                                                     OrderStatus.ACKNOWLEDGED, D(0))
    assert order.venue_order_id == str(fake.orders()["s2"]["order_id"])
    (trade,) = snap.trades
    assert (trade.client_order_id, trade.quantity, trade.price, trade.fee, trade.fee_currency, trade.side) == (
        "s1", D(10), D(200), D(1), "USD", Side.BUY)
    assert snap.balances == {"USD": fake.balances()["USD"], "AAPL": D(10)}
    assert snap.balances["USD"] == D("100000") - D("2000") - D("1")
    assert ACCOUNT.startswith("DU")


def test_sandbox_needs_a_paper_account():
    live = FakeIB(account="U7654321")  # a live account number
    live.start()

    async def main():
        v = make(live, sandbox=True)
        with pytest.raises(ValueError, match="paper account"):
            await v.start()
        await v.close()
    try:
        asyncio.run(main())
    finally:
        live.stop()


def test_make_venue_builds_the_ib_adapter_from_the_settings(fake):
    from deploy.settings import Settings
    from streaming.venues import make_venue

    settings = Settings(_env_file=None, mode="sandbox", venue="ib", ib_host=fake.host, ib_port=fake.port,
                        ib_client_id=31, venue_timeout_s=2)
    venue = make_venue(settings, None, "ibacct", ["AAPL/USD"], reconnect_base_s=0.05)
    assert isinstance(venue, IBVenue) and (venue.port, venue.client_id, venue.sandbox) == (fake.port, 31, True)

    async def body(v):
        v.submit(req("mv1", qty="2"))
        return await until(v, final("mv1"))

    async def main():
        await venue.start()
        try:
            return await body(venue)
        finally:
            await venue.close()
    assert status_of(asyncio.run(main()), "mv1")[-1] is OrderStatus.FILLED


@pytest.mark.parametrize("accept", [True, False])
def test_order_whose_answer_was_lost_is_unknown_then_resolved_by_query_never_resent(fake, accept):
    fake.fault("drop_on_place", accept=accept)

    async def body(v):
        v.submit(req("u1", qty="3"))
        events = await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "u1"))
        await until(v, lambda evs: v.health()[0] == "ok", events=events)  # reconnected
        v.query("u1", "AAPL/USD", 0)  # what the OMS does with an unknown order
        return await until(v, final("u1"), events=events)

    events = run(fake, body)
    (unknown,) = [e for e in events if isinstance(e, OrderEvent) and e.status is OrderStatus.UNKNOWN]
    assert unknown.reason == "network"
    if accept:
        assert status_of(events, "u1")[-1] is OrderStatus.FILLED and [f.quantity for f in fills_of(events)] == [D(3)]
        assert fake.placed("u1") == 1
    else:
        assert [(e.status, e.reason) for e in events if isinstance(e, OrderEvent)][-1] == (
            OrderStatus.REJECTED, "not_found_at_venue")
        assert fake.placed("u1") == 0


def test_order_cancelled_by_the_venue_while_disconnected_is_reported_canceled(fake):
    async def body(v):
        v.submit(req("x1", price="150.00"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "x1"))
        fake.refuse(True)
        fake.drop()
        await until(v, lambda evs: v.health()[0] == "degraded", events=events)
        fake.cancel_by_ref("x1")
        fake.refuse(False)
        return await until(v, final("x1"), events=events)

    events = run(fake, body)
    assert [(e.status, e.reason) for e in events if isinstance(e, OrderEvent)] == [
        (OrderStatus.ACKNOWLEDGED, None), (OrderStatus.CANCELED, "canceled_at_venue")]


def test_tws_losing_ib_servers_degrades_until_restored(fake):
    async def body(v):
        fake.notify(1100, "Connectivity between IB and Trader Workstation has been lost.")
        await until(v, lambda evs: v.health()[0] == "degraded")
        assert "1100" in v.health()[1]
        resyncs = v.resyncs
        fake.notify(1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
        await until(v, lambda evs: v.health() == ("ok", None) and v.resyncs > resyncs)

    run(fake, body)


def test_halt_on_1100_past_the_limit_is_cleared_by_1102_after_cancelling_open_orders(fake):
    async def body(v):
        v.submit(req("k1", price="150.00"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "k1"))
        fake.notify(1100, "Connectivity between IB and Trader Workstation has been lost.")
        await until(v, lambda evs: v.health()[0] == "halt", events=events)
        fake.notify(1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
        await until(v, lambda evs: final("k1")(evs) and v.health() == ("ok", None), events=events)
        return events

    events = run(fake, body, unreachable_halt_s=0.1)
    assert status_of(events, "k1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.CANCELED]
    assert fake.orders()["k1"]["status"] == "CANCELED"


def test_order_of_an_earlier_client_id_is_adopted_and_its_fills_found_by_periodic_resync(fake):
    async def first(v):
        v.submit(req("a1", qty="8", price="150.00"))
        await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "a1"))

    run(fake, first)

    async def second(v):  # another client id: TWS sends it no live reports of a1
        v.query("a1", "AAPL/USD", 0)
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "a1"))
        fake.trade("AAPL/USD", "149.00", "8")
        return await until(v, final("a1"), events=events)

    events = run(fake, second, resync_s=0.2)
    assert status_of(events, "a1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert [f.quantity for f in fills_of(events)] == [D(8)] and fake.placed("a1") == 1


def test_through_the_oms_every_transition_is_valid_and_an_unknown_order_is_resolved_by_query(fake):
    from trading.oms.manager import OrderManager

    fake.fault("drop_on_place", accept=True, count=1)

    async def body(v):
        oms = OrderManager(v, account="ibacct", query_backoff_s=(0.1, 0.2))
        seen: list = []

        async def pump(done):
            deadline = time.monotonic() + 5
            while not done():
                assert time.monotonic() < deadline, [short(e) for e in oms.events_sink]
                seen.extend(oms.poll(time.time_ns()))
                await asyncio.sleep(0.02)

        oms.submit(req("o1", qty="2"))  # its answer is lost with the socket: UNKNOWN until the OMS asks
        oms.drained()
        oms.release()  # the intent is committed: now it leaves
        await pump(lambda: "o1" not in oms.orders)
        oms.submit(req("o2", qty="5", price="150.00"))
        oms.drained()
        oms.release()
        await pump(lambda: oms.orders["o2"].status is OrderStatus.ACKNOWLEDGED)
        oms.cancel("o2", time.time_ns())
        await pump(lambda: not oms.orders)
        return oms, seen

    oms, seen = run(fake, body)
    journal = [(e.client_order_id, e.status) for e in oms.events_sink]
    assert [s for c, s in journal if c == "o1"] == [OrderStatus.NEW, OrderStatus.SUBMITTING, OrderStatus.UNKNOWN,
                                                   OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert [s for c, s in journal if c == "o2"][-2:] == [OrderStatus.CANCEL_PENDING, OrderStatus.CANCELED]
    assert "unexpected_transition" not in oms.counters and "stale_event" not in oms.counters
    assert [f.quantity for f in seen if isinstance(f, Fill)] == [D(2)]
    assert fake.placed("o1") == fake.placed("o2") == 1


def test_query_after_restart_finds_a_cancelled_order_among_completed_orders(fake):
    async def first(v):
        v.submit(req("cc1", price="150.00"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "cc1"))
        v.cancel("cc1", time.time_ns())
        await until(v, final("cc1"), events=events)

    run(fake, first)

    async def second(v):
        v.query("cc1", "AAPL/USD", 0)
        return await until(v, final("cc1"))

    events = run(fake, second)
    assert [(e.status, e.reason) for e in events] == [(OrderStatus.ACKNOWLEDGED, None),
                                                      (OrderStatus.CANCELED, "canceled_at_venue")]
    assert events[-1].venue_order_id == str(fake.orders()["cc1"]["order_id"])
