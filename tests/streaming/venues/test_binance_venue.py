"""BinanceVenue with the REAL ccxt.pro client against the fake Binance (tests/fakes/binance.py) on 127.0.0.1:
orders end to end over REST + the WS-API user-data stream, every fault the fake scripts, and what the adapter
reports for each (through poll(), as the OMS sees it).  Timeouts are short (constructor parameters)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest

from streaming import metrics
from streaming.venues import limits, make_venue
from streaming.venues.binance import BinanceVenue
from tests.fakes.binance import DEFAULT_KEY, DEFAULT_SECRET, FakeBinance
from tests.streaming.venues.helpers import counter, final, status_of, until
from trading.records import Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, TimeInForce, stable_id

D = Decimal
FAST = dict(timeout_s=1.0, housekeeping_s=0.05, rate_limit_ms=1, budget_per_min=60000, reconnect_base_s=0.05,
            reconnect_max_s=0.2, fill_grace_s=0.2, rest_poll_s=30.0, stale_after_s=30.0, unreachable_halt_s=30.0)


@pytest.fixture
def fake():
    f = FakeBinance()
    f.start()
    yield f
    f.stop()


_accounts = iter(range(10**6))


def run(fake, body, **kw):
    """``body(venue)`` with a started BinanceVenue on the fake (its own account label: separate metrics)."""
    params = {**FAST, **kw}

    async def main():
        venue = BinanceVenue(account=params.pop("account", f"acct{next(_accounts)}"), api_key=DEFAULT_KEY,
                             secret=DEFAULT_SECRET, symbols=["BTC/USDT"], api_url=fake.base_url, **params)
        await venue.start()
        try:
            return await body(venue)
        finally:
            await venue.close()
    return asyncio.run(main())


def req(venue, cid, side=Side.BUY, qty="0.01", price=None, order_type=None, **kw) -> OrderRequest:
    order_type = order_type or (OrderType.LIMIT if price is not None else OrderType.MARKET)
    return OrderRequest(cid, venue.account, "strat", "binance", "BTC/USDT", side, order_type, D(qty),
                        D(price) if price is not None else None, ts=time.time_ns(), **kw)


def posts(fake):
    return sum(1 for r in fake.ex.requests if r == ("POST", "order"))


# ---- orders end to end ------------------------------------------------------------------------------------

def test_market_order_acked_filled_and_each_fill_reported_once(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        events = await until(v, final("m1"), events=[] if v.submit(req(v, "m1")) == [] else None)
        await asyncio.sleep(0.3)  # the socket's copy of the same fill arrives too
        await v.resync("stale", ["BTC/USDT"])  # and REST's
        events += v.poll()
        return events

    events = run(fake, body)
    assert status_of(events, "m1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    fills = [e for e in events if isinstance(e, Fill)]
    assert len(fills) == 1
    fill = fills[0]
    (venue_fill,) = fake.books()["trades"]
    assert fill.quantity == D("0.01") and fill.price == D("50000") and fill.side is Side.BUY
    assert fill.fee == D("0.5") and fill.fee_currency == "USDT"
    assert fill.fill_id == stable_id("fill", "binance", venue_fill["trade_id"])
    ack = events[0]
    assert ack.venue_order_id and events.index(fill) < len(events) - 1  # the fill before the FILLED it caused
    assert events[-1].status is OrderStatus.FILLED and events[-1].filled_quantity == D("0.01")
    assert fake.accepted_count("m1") == 1


def test_resting_limit_filled_later_over_the_socket(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "l1", price="49000", qty="0.02"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "l1"))
        assert [o.client_order_id for o in v.open_orders()] == ["l1"]
        fake.trade("BTC/USDT", "48990", "0.01")  # half of it
        await until(v, lambda evs: OrderStatus.PARTIALLY_FILLED in status_of(evs, "l1"), events=events)
        fake.trade("BTC/USDT", "48990", "0.05")
        return await until(v, final("l1"), events=events)

    events = run(fake, body)
    assert status_of(events, "l1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    fills = [e for e in events if isinstance(e, Fill)]
    assert [f.quantity for f in fills] == [D("0.01"), D("0.01")]
    assert all(f.price == D("49000") and f.liquidity.value == "maker" for f in fills)


def test_post_only_rests_as_limit_maker_or_is_refused_if_it_would_take(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "po-take", price="50100", post_only=True))
        v.submit(req(v, "po-rest", price="49000", post_only=True))
        events = await until(v, final("po-take"))
        return await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "po-rest"), events=events)

    events = run(fake, body)
    take = [e for e in events if isinstance(e, OrderEvent) and e.client_order_id == "po-take"]
    assert [(e.status, e.reason) for e in take] == [(OrderStatus.REJECTED, "post_only_would_take")]
    rest = fake.books()["orders"]["po-rest"]
    assert rest["type"] == "LIMIT_MAKER" and rest["status"] == "NEW"


def test_ioc_partial_fill_then_expired(fake):
    fake.set_price("BTC/USDT", "50000")
    fake.fault("partial_fill", fraction="0.5", rest="expire")

    async def body(v):
        v.submit(req(v, "ioc1", price="50100", qty="0.02", time_in_force=TimeInForce.IOC))
        return await until(v, final("ioc1"))

    events = run(fake, body)
    assert status_of(events, "ioc1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.EXPIRED]
    assert [e.quantity for e in events if isinstance(e, Fill)] == [D("0.01")]
    assert events[-1].filled_quantity == D("0.01")
    order = fake.books()["orders"]["ioc1"]
    assert order["tif"] == "IOC"


def test_cancel_reports_canceled_with_the_original_client_id(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "c1", price="40000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "c1"))
        assert v.cancel("c1", time.time_ns()) == []
        return await until(v, final("c1"), events=events)

    events = run(fake, body)
    assert status_of(events, "c1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.CANCELED]
    assert fake.books()["orders"]["c1"]["status"] == "CANCELED"


def test_precision_and_min_notional_refused_without_sending(fake):
    async def body(v):
        v.submit(req(v, "tiny", qty="0.000001", price="50000"))  # rounds to 0 at the 0.00001 step
        v.submit(req(v, "small", qty="0.00005", price="50000"))  # 2.5 USDT < 5 minimum notional
        v.submit(req(v, "trunc", qty="0.0100099", price="40000.004"))  # sent as 0.01 @ 40000.00
        return await until(v, lambda evs: len(status_of(evs, "tiny") + status_of(evs, "small")) == 2
                           and OrderStatus.ACKNOWLEDGED in status_of(evs, "trunc"))

    events = run(fake, body)
    reasons = {e.client_order_id: e.reason for e in events if isinstance(e, OrderEvent)
               and e.status is OrderStatus.REJECTED}
    assert reasons == {"tiny": "lot_size", "small": "below_min_notional"}
    assert posts(fake) == 1
    sent = fake.books()["orders"]["trunc"]
    assert D(sent["qty"]) == D("0.01") and D(sent["price"]) == D("40000")


def test_insufficient_balance_is_rejected(fake):
    fake.set_balance("USDT", "10")

    async def body(v):
        v.submit(req(v, "poor", qty="0.01", price="50000"))
        return await until(v, final("poor"))

    events = run(fake, body)
    assert [(e.status, e.reason) for e in events] == [(OrderStatus.REJECTED, "insufficient_funds")]


# ---- doubtful outcomes: UNKNOWN, resolved by query, never sent twice ----------------------------------------

def test_5xx_after_accept_is_unknown_and_query_finds_the_real_state(fake):
    fake.set_price("BTC/USDT", "50000")
    fake.fault("http_5xx", status=503, accept=True, route="POST order")

    async def body(v):
        v.submit(req(v, "x5"))
        events = await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "x5"))
        assert [e.reason for e in events] == ["http_5xx"]
        v.query("x5", "BTC/USDT", time.time_ns())
        return await until(v, final("x5"), events=events)

    events = run(fake, body, use_websocket=False)
    assert status_of(events, "x5") == [OrderStatus.UNKNOWN, OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert len([e for e in events if isinstance(e, Fill)]) == 1
    assert fake.accepted_count("x5") == 1 and posts(fake) == 1


def test_timeout_is_unknown_and_query_resolves_it_either_way(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        fake.fault("timeout", seconds=1.0, accept=True, route="POST order")
        v.submit(req(v, "t-acc", price="40000"))
        events = await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "t-acc"))
        fake.fault("timeout", seconds=1.0, accept=False, route="POST order")
        v.submit(req(v, "t-not", price="40000"))
        await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "t-not"), events=events)
        v.query("t-acc", "BTC/USDT", time.time_ns())
        v.query("t-not", "BTC/USDT", time.time_ns())
        await until(v, lambda evs: final("t-not")(evs) and OrderStatus.ACKNOWLEDGED in status_of(evs, "t-acc"),
                    events=events)
        return events

    events = run(fake, body, use_websocket=False, timeout_s=0.4)
    unknown = [e for e in events if isinstance(e, OrderEvent) and e.status is OrderStatus.UNKNOWN]
    assert {e.reason for e in unknown} == {"timeout"}
    assert status_of(events, "t-acc") == [OrderStatus.UNKNOWN, OrderStatus.ACKNOWLEDGED]
    not_found = [e for e in events if isinstance(e, OrderEvent) and e.client_order_id == "t-not"][-1]
    assert (not_found.status, not_found.reason) == (OrderStatus.REJECTED, "not_found_at_venue")
    assert fake.accepted_count("t-acc") == 1 and fake.accepted_count("t-not") == 0 and posts(fake) == 2


def test_duplicate_client_id_at_the_venue_is_unknown_then_queried(fake):
    fake.set_price("BTC/USDT", "50000")

    async def first(v):
        v.submit(req(v, "dup", price="40000"))
        await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "dup"))

    async def again(v):  # a fresh adapter (a restart) sends the same client id
        v.submit(req(v, "dup", price="40000"))
        events = await until(v, lambda evs: OrderStatus.UNKNOWN in status_of(evs, "dup"))
        v.query("dup", "BTC/USDT", time.time_ns())
        return await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "dup"), events=events)

    run(fake, first)
    events = run(fake, again, use_websocket=False)
    assert [(e.status, e.reason) for e in events] == [(OrderStatus.UNKNOWN, "duplicate_client_order_id"),
                                                      (OrderStatus.ACKNOWLEDGED, None)]
    assert fake.accepted_count("dup") == 1


# ---- limits: 429, 418, clock skew ---------------------------------------------------------------------------

def test_429_waits_retry_after_and_sends_again_counted(fake):
    fake.set_price("BTC/USDT", "50000")
    fake.fault("rate_limit", retry_after=1, route="POST order")

    async def body(v):
        start = time.monotonic()
        v.submit(req(v, "r1"))
        events = await until(v, final("r1"))
        return events, time.monotonic() - start, v.account

    events, took, account = run(fake, body)
    assert status_of(events, "r1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert took >= 1.0
    assert counter(metrics.VENUE_RATE_LIMITED, "binance", account) == 1
    assert fake.accepted_count("r1") == 1


def test_418_opens_the_breaker_halts_and_refuses_later_orders_unsent(fake):
    fake.set_price("BTC/USDT", "50000")
    fake.fault("ban", retry_after=60, route="POST order")

    async def body(v):
        assert v.health() == ("ok", None)
        v.submit(req(v, "b1"))
        events = await until(v, final("b1"))
        sent = posts(fake)
        v.submit(req(v, "b2"))
        await until(v, final("b2"), events=events)
        return events, v.health(), sent, v.account

    events, health, sent, account = run(fake, body)
    assert [(e.status, e.reason) for e in events] == [(OrderStatus.REJECTED, "venue_ip_banned")] * 2
    assert health[0] == "halt" and health[1].startswith("venue_ip_banned")
    assert posts(fake) == sent == 1
    assert counter(metrics.VENUE_IP_BANS, "binance", account) == 1


def test_clock_skew_is_measured_at_start_and_again_when_refused(fake):
    fake.set_price("BTC/USDT", "50000")
    fake.fault("clock_skew", offset_ms=30000)  # beyond the 10 s recvWindow

    async def body(v):
        v.submit(req(v, "s1"))
        events = await until(v, final("s1"))
        fake.clear_faults("clock_skew")
        fake.fault("clock_skew", offset_ms=-40000)  # the venue's clock jumps while running
        v.submit(req(v, "s2"))
        return await until(v, final("s2"), events=events)

    events = run(fake, body)
    assert status_of(events, "s1")[-1] is OrderStatus.FILLED and status_of(events, "s2")[-1] is OrderStatus.FILLED
    assert fake.accepted_count("s2") == 1


# ---- the socket: silent, dropped ----------------------------------------------------------------------------

def test_silent_socket_watchdog_resyncs_over_rest_and_gets_the_fill(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "q1", price="49000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "q1"))
        before = counter(metrics.VENUE_RESYNCS, "binance", v.account, "stale")
        fake.fault("ws_silent", count=None)
        fake.trade("BTC/USDT", "48000", "1")
        await until(v, final("q1"), events=events, timeout=5)
        return events, counter(metrics.VENUE_RESYNCS, "binance", v.account, "stale") - before

    events, resyncs = run(fake, body, stale_after_s=0.5)
    assert status_of(events, "q1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert len([e for e in events if isinstance(e, Fill)]) == 1
    assert resyncs >= 1


def test_fills_while_disconnected_are_fetched_after_the_reconnect(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "d1", price="49000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "d1"))
        await asyncio.sleep(0.2)
        reconnects = counter(metrics.VENUE_WS_RECONNECTS, "binance", v.account)
        fake.drop_ws()
        while counter(metrics.VENUE_WS_RECONNECTS, "binance", v.account) - reconnects < 3:
            await asyncio.sleep(0.005)  # all three watchers saw the close: the fill below reaches no socket
        fake.trade("BTC/USDT", "48000", "1")
        await until(v, final("d1"), events=events, timeout=5)
        return (events, counter(metrics.VENUE_WS_RECONNECTS, "binance", v.account) - reconnects,
                counter(metrics.VENUE_RESYNCS, "binance", v.account, "reconnect"))

    # stale watchdog and REST polling at 30 s: not them; the redial waits 0.3 s, after the fill
    events, reconnects, resyncs = run(fake, body, reconnect_base_s=0.3, reconnect_max_s=1, reconnect_settle_s=0.2)
    assert status_of(events, "d1") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
    assert len([e for e in events if isinstance(e, Fill)]) == 1
    assert reconnects >= 1 and resyncs >= 1


# ---- unreachable: maintenance -> halt -> back: open orders cancelled ---------------------------------------

def test_maintenance_halts_after_the_limit_and_cancels_open_orders_when_back(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "keep", price="40000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "keep"))
        fake.fault("maintenance", count=None)
        v.submit(req(v, "m-1"))
        await until(v, final("m-1"), events=events)
        degraded = v.health()
        await asyncio.sleep(0.8)
        halted = v.health()
        v.submit(req(v, "m-2"))
        await until(v, final("m-2"), events=events)
        fake.clear_faults("maintenance")
        await until(v, final("keep"), events=events, timeout=5)
        deadline = time.monotonic() + 3
        while v.health()[0] != "ok" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return events, degraded, halted, v.health()

    events, degraded, halted, after = run(fake, body, unreachable_halt_s=0.5)
    rejected = {e.client_order_id: e.reason for e in events if isinstance(e, OrderEvent)
                and e.status is OrderStatus.REJECTED}
    assert rejected == {"m-1": "venue_unreachable", "m-2": "venue_unreachable"}
    assert degraded[0] == "degraded" and halted[0] == "halt" and halted[1].startswith("venue_unreachable")
    assert status_of(events, "keep") == [OrderStatus.ACKNOWLEDGED, OrderStatus.CANCELED]
    assert after == ("ok", None), after
    assert fake.accepted_count("m-2") == 0


# ---- metrics, snapshot, the factory --------------------------------------------------------------------------

def test_snapshot_used_weight_and_the_factory(fake):
    fake.set_price("BTC/USDT", "50000")

    class S:
        venue, venue_api_url, venue_account_budget_per_min = "binance", fake.base_url, 60000
        venue_stale_after_s, venue_unreachable_halt_s, venue_timeout_s, mode = 30.0, 30.0, 1.0, "live"

    async def main():
        since = time.time_ns() - 10**9
        v = make_venue(S(), {"apiKey": DEFAULT_KEY, "secret": DEFAULT_SECRET}, "snap", ["BTC/USDT"],
                       rate_limit_ms=1, housekeeping_s=0.05)
        await v.start()
        try:
            v.submit(req(v, "sn-fill"))
            v.submit(req(v, "sn-open", price="40000"))
            await until(v, lambda evs: final("sn-fill")(evs) and OrderStatus.ACKNOWLEDGED in status_of(evs, "sn-open"))
            return await v.snapshot(since), v
        finally:
            await v.close()

    snap, v = asyncio.run(main())
    assert [(o.client_order_id, o.status, o.price) for o in snap.open_orders] == [
        ("sn-open", OrderStatus.ACKNOWLEDGED, D("40000"))]
    assert [(t.client_order_id, t.quantity) for t in snap.trades] == [("sn-fill", D("0.01"))]
    assert snap.balances["BTC"] == D("1.01")
    assert v.weight.used and metrics.VENUE_USED_WEIGHT.labels("binance", "snap")._value.get() == v.weight.used
    assert counter(metrics.VENUE_REQUESTS, "binance", "snap", "create_order") == 2
    assert make_venue(type("P", (), {"venue": "paper"})(), {}, "a", []) is None


def test_budget_is_shared_and_waited_for_and_no_key_or_signature_is_logged(fake, caplog):
    fake.set_price("BTC/USDT", "50000")
    caplog.set_level(logging.DEBUG)

    async def body(v):
        assert v.budget is limits.account_budget("binance", v.account, 600, 1)
        start = time.monotonic()
        for i in range(6):
            v.submit(req(v, f"bw{i}"))
        events = await until(v, final("bw5"))
        return events, time.monotonic() - start, counter(metrics.VENUE_BUDGET_WAIT, "binance", v.account)

    # 600/min = one request per 0.1 s, nothing saved up: six orders take at least 0.5 s, waited for the budget
    events, took, waited = run(fake, body, budget_per_min=600, budget_burst=1)
    assert sum(1 for e in events if isinstance(e, Fill)) == 6
    assert waited >= 0.4 and took >= 0.45
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert DEFAULT_SECRET not in text and DEFAULT_KEY not in text and "signature=" not in text


def test_after_a_restart_query_adopts_the_venues_order_and_submit_works_from_another_thread(fake):
    fake.set_price("BTC/USDT", "50000")

    async def before(v):
        v.submit(req(v, "old", price="40000"))
        await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "old"))

    async def after(v):  # a new adapter: it knows nothing of "old"
        v.query("old", "BTC/USDT", time.time_ns())
        v.query("never-sent", "BTC/USDT", time.time_ns())
        events = await until(v, lambda evs: status_of(evs, "old") and status_of(evs, "never-sent"))
        open_now = [(o.client_order_id, o.price) for o in v.open_orders()]
        await asyncio.to_thread(v.submit, req(v, "from-thread"))  # the engine's thread, not the loop's
        await until(v, final("from-thread"), events=events)
        return events, open_now

    run(fake, before)
    events, open_now = run(fake, after)
    old = [e for e in events if isinstance(e, OrderEvent) and e.client_order_id == "old"]
    assert [(e.status, e.strategy) for e in old] == [(OrderStatus.ACKNOWLEDGED, "")]
    assert old[0].venue_order_id == str(fake.books()["orders"]["old"]["order_id"])
    gone = [e for e in events if isinstance(e, OrderEvent) and e.client_order_id == "never-sent"]
    assert [(e.status, e.reason) for e in gone] == [(OrderStatus.REJECTED, "not_found_at_venue")]
    assert open_now == [("old", D("40000"))]
    assert status_of(events, "from-thread")[-1] is OrderStatus.FILLED


def test_an_account_paying_fees_in_bnb_is_refused_at_start_with_the_reason(fake):
    fake.ex.fault("bnb_burn", count=None)

    async def body(v):  # pragma: no cover - start must refuse
        return None

    with pytest.raises(RuntimeError, match=r"pays trading fees in BNB .*turn the setting off"):
        run(fake, body)
    assert ("GET", "order") not in fake.ex.requests and posts(fake) == 0
    fake.ex.clear_faults("bnb_burn")
    assert run(fake, lambda v: asyncio.sleep(0, result="started")) == "started"


def test_refused_resubscription_falls_back_to_rest_polling_degraded(fake):
    fake.set_price("BTC/USDT", "50000")

    async def body(v):
        v.submit(req(v, "rs", price="49000"))
        events = await until(v, lambda evs: OrderStatus.ACKNOWLEDGED in status_of(evs, "rs"))
        fake.fault("clock_skew", offset_ms=-40000)  # the resubscription's signed timestamp is refused
        fake.drop_ws()
        deadline = time.monotonic() + 3
        while v.health()[0] == "ok" or v._redial:
            assert time.monotonic() < deadline, v.health()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        health = v.health()
        fake.trade("BTC/USDT", "48000", "1")
        await until(v, final("rs"), events=events)
        return events, health

    events, health = run(fake, body, rest_poll_s=0.3)
    assert health == ("degraded", "user_stream_down: polling over REST")
    assert status_of(events, "rs") == [OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED]
