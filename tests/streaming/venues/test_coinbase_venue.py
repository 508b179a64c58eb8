"""CoinbaseVenue with the REAL ccxt.pro client against the fake Coinbase Advanced Trade (tests/fakes/coinbase.py):
ES256 JWT auth, orders end to end, fills over REST (Coinbase's socket carries orders only), an order found by
client id without a lookup endpoint, faults, and the clock check Coinbase's locally signed tokens need."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from streaming import metrics
from streaming.venues.coinbase import CoinbaseVenue
from tests.fakes.coinbase import FakeCoinbase, make_cloud_key, trade_uuid
from tests.streaming.venues.helpers import counter, final, status_of, until
from trading.records import Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, TimeInForce, stable_id

D = Decimal
FAST = dict(timeout_s=1.0, housekeeping_s=0.05, rate_limit_ms=1, budget_per_min=60000, reconnect_base_s=0.05,
            reconnect_max_s=0.2, fill_grace_s=0.2, rest_poll_s=30.0, stale_after_s=30.0, unreachable_halt_s=30.0)


@pytest.fixture(scope="module")
def key():
    return make_cloud_key()


@pytest.fixture
def fake(key):
    f = FakeCoinbase(api_key=key[0], secret=key[1])
    f.start()
    f.set_price("BTC/USD", "50000")
    yield f
    f.stop()


_accounts = iter(range(10**6))


def run(fake, body, **kw):
    params = {**FAST, **kw}

    async def main():
        venue = CoinbaseVenue(account=f"cb{next(_accounts)}", api_key=fake.api_key, secret=fake.secret,
                              symbols=["BTC/USD"], api_url=fake.base_url, **params)
        await venue.start()
        try:
            return await body(venue)
        finally:
            await venue.close()
    return asyncio.run(main())


def req(venue, cid, side=Side.BUY, qty="0.01", price=None, **kw) -> OrderRequest:
    order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
    return OrderRequest(cid, venue.account, "strat", "coinbase", "BTC/USD", side, order_type, D(qty),
                        D(price) if price is not None else None, ts=time.time_ns(), **kw)


def posts(fake):
    return sum(1 for r in fake.ex.requests if r == ("POST", "orders"))


def test_market_buy_in_base_units_acked_filled_fill_once(fake):
    async def body(v):
        v.submit(req(v, "cm1"))
        events = await until(v, final("cm1"))
        await v.resync("stale", ["BTC/USD"])
        return events + v.poll()

    events = run(fake, body)
    assert status_of(events, "cm1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    (fill,) = [e for e in events if isinstance(e, Fill)]
    (venue_fill,) = fake.books()["trades"]
    assert fill.quantity == D("0.01") and fill.price == D("50000") and fill.fee_currency == "USD"
    assert fill.fill_id == stable_id("fill", "coinbase", trade_uuid(venue_fill["trade_id"]))
    order = fake.books()["orders"]["cm1"]
    assert D(order["qty"]) == D("0.01") and events[0].venue_order_id == order["venue_order_id"]


def test_limit_rests_then_fills_reported_from_rest(fake):
    async def body(v):
        v.submit(req(v, "cl1", price="49000", qty="0.02"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "cl1"))
        fake.trade("BTC/USD", "48990", "0.01")  # the socket says 0.01 filled; the fill itself comes over REST
        await until(v, lambda evs: OrderStatus.PARTIALLY_FILLED in status_of(evs, "cl1"), events=events)
        fake.trade("BTC/USD", "48990", "0.05")
        return await until(v, final("cl1"), events=events)

    events = run(fake, body)
    assert status_of(events, "cl1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert [(e.quantity, e.price, e.liquidity.value) for e in events if isinstance(e, Fill)] == [
        (D("0.01"), D("49000"), "maker")] * 2


def test_post_only_ioc_cancel_and_insufficient_funds(fake):
    fake.fault("partial_fill", fraction="0.5", rest="expire")

    async def body(v):
        v.submit(req(v, "ioc", price="50100", qty="0.02", time_in_force=TimeInForce.IOC))
        events = await until(v, final("ioc"))
        v.submit(req(v, "po", price="50100", post_only=True))
        v.submit(req(v, "rest", price="40000", post_only=True))
        await until(v, lambda evs: final("po")(evs) and OrderStatus.ACKNOWLEDGED in status_of(evs, "rest"),
                    events=events)
        v.cancel("rest", time.time_ns())
        await until(v, final("rest"), events=events)
        fake.set_balance("USD", "1")
        v.submit(req(v, "poor", price="40000"))
        return await until(v, final("poor"), events=events)

    events = run(fake, body)
    ioc = [e for e in events if e.client_order_id == "ioc"]
    # the socket's EXPIRED can come before the fill (read over REST): then it waits for it, with no partial between
    assert ioc[0].status is OrderStatus.ACKNOWLEDGED and ioc[-1].status is OrderStatus.EXPIRED
    assert ioc[-1].filled_quantity == D("0.01") and [type(e) for e in ioc[-2:]] == [Fill, OrderEvent]
    assert sum(1 for e in ioc if isinstance(e, Fill)) == 1
    reasons = {e.client_order_id: e.reason for e in events if isinstance(e, OrderEvent)
               and e.status is OrderStatus.REJECTED}
    assert reasons == {"po": "post_only_would_take", "poor": "insufficient_funds"}
    assert status_of(events, "rest") == [OrderStatus.ACKNOWLEDGED, OrderStatus.CANCELED]
    assert fake.books()["orders"]["rest"]["type"] == "LIMIT_MAKER"


def test_5xx_after_accept_unknown_then_found_by_client_id(fake):
    fake.fault("http_5xx", status=503, accept=True)

    async def body(v):
        v.submit(req(v, "c5"))
        events = await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "c5"))
        v.query("c5", "BTC/USD", time.time_ns())
        return await until(v, final("c5"), events=events)

    events = run(fake, body, use_websocket=False)
    assert [(e.status, e.reason) for e in events if isinstance(e, OrderEvent)] == [
        (OrderStatus.UNKNOWN, "http_5xx"), (OrderStatus.ACKNOWLEDGED, None), (OrderStatus.FILLED, None)]
    assert len([e for e in events if isinstance(e, Fill)]) == 1
    assert fake.accepted_count("c5") == 1 and posts(fake) == 1
    assert ("GET", "orders/historical/batch") in fake.ex.requests  # no lookup by client id: searched


def test_timeout_not_processed_is_not_found_at_venue(fake):
    fake.fault("timeout", seconds=1.0, accept=False)

    async def body(v):
        v.submit(req(v, "ct"))
        events = await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "ct"))
        v.query("ct", "BTC/USD", time.time_ns())
        return await until(v, final("ct"), events=events)

    events = run(fake, body, use_websocket=False, timeout_s=0.4)
    assert [(e.status, e.reason) for e in events] == [(OrderStatus.UNKNOWN, "timeout"),
                                                      (OrderStatus.REJECTED, "not_found_at_venue")]
    assert fake.accepted_count("ct") == 0


def test_429_waited_and_counted(fake):
    fake.fault("rate_limit", retry_after=1, route="POST orders")

    async def body(v):
        start = time.monotonic()
        v.submit(req(v, "cr"))
        events = await until(v, final("cr"))
        return events, time.monotonic() - start, counter(metrics.VENUE_RATE_LIMITED, "coinbase", v.account)

    events, took, limited = run(fake, body)
    assert status_of(events, "cr")[-1] is OrderStatus.FILLED and took >= 1.0 and limited == 1
    assert fake.accepted_count("cr") == 1


def test_clock_skew_refused_clearly(fake):
    fake.fault("clock_skew", offset_ms=-60000)  # this machine runs a minute ahead of the venue
    with pytest.raises(RuntimeError, match=r"clock_skew: .*clock is \+60\.\d s off coinbase's.*NTP"):
        run(fake, lambda v: asyncio.sleep(0))


def test_silent_socket_fills_come_over_rest_polling(fake):
    async def body(v):
        v.submit(req(v, "cs", price="49000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "cs"))
        fake.fault("ws_silent", count=None)
        fake.trade("BTC/USD", "48000", "1")
        return await until(v, final("cs"), events=events)

    events = run(fake, body, rest_poll_s=0.3)
    assert status_of(events, "cs") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert len([e for e in events if isinstance(e, Fill)]) == 1


def test_maintenance_halts_then_open_orders_cancelled(fake):
    async def body(v):
        v.submit(req(v, "keep", price="40000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "keep"))
        fake.fault("maintenance", count=None)
        v.submit(req(v, "during"))
        await until(v, lambda evs: status_of(evs, "during"), events=events)
        await asyncio.sleep(0.7)
        halted = v.health()
        fake.clear_faults("maintenance")
        await until(v, final("keep"), events=events, timeout=5)
        deadline = time.monotonic() + 3
        while v.health()[0] != "ok" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return events, halted, v.health()

    events, halted, after = run(fake, body, unreachable_halt_s=0.5)
    assert [(e.status, e.reason) for e in events if e.client_order_id == "during"][0] == (OrderStatus.UNKNOWN,
                                                                                         "http_5xx")
    assert halted[0] == "halt" and "venue_unreachable" in halted[1]
    assert status_of(events, "keep") == [OrderStatus.ACKNOWLEDGED, OrderStatus.CANCELED]
    assert after == ("ok", None)


def test_snapshot_and_sandbox_refused(fake):
    async def body(v):
        since = time.time_ns() - 10**9
        v.submit(req(v, "sf"))
        v.submit(req(v, "so", price="40000"))
        await until(v, lambda evs: final("sf")(evs) and OrderStatus.ACKNOWLEDGED in status_of(evs, "so"))
        return await v.snapshot(since)

    snap = run(fake, body)
    assert [(o.client_order_id, o.price) for o in snap.open_orders] == [("so", D("40000"))]
    assert [(t.client_order_id, t.quantity) for t in snap.trades] == [("sf", D("0.01"))]
    assert snap.balances["BTC"] == D("1.01")
    with pytest.raises(ValueError, match="no test network"):
        CoinbaseVenue(account="x", api_key="k" * 8, secret="s" * 8, symbols=["BTC/USD"], sandbox=True)
