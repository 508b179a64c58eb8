"""The venue adapters' pieces that need no server: the request budget, the used-weight pause, the ban breaker,
the error mapping table, redaction, the market rules (real ccxt markets parsed offline from an exchangeInfo
entry), and the event logic (fills once, before the status they cause; a final status held until its fills)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import ccxt
import pytest

from streaming.venues import limits
from streaming.venues.binance import BinanceVenue
from streaming.venues.errors import classify, redact
from streaming.venues.rules import Refused, prepare
from trading.records import Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, TimeInForce, stable_id

D = Decimal


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------- limits

def test_token_bucket_refills_at_its_rate_and_caps_the_burst():
    clock = FakeClock()
    bucket = limits.TokenBucket(60, burst=2, clock=clock)  # 1 token/s
    assert bucket.try_take() == 0 and bucket.try_take() == 0
    assert bucket.try_take() == pytest.approx(1.0)
    clock.t += 0.5
    assert bucket.try_take() == pytest.approx(0.5)
    clock.t += 100  # idle: never more than the burst saved up
    assert [bucket.try_take() for _ in range(3)][:2] == [0, 0]


def test_budget_is_shared_per_account_and_acquire_waits():
    a = limits.account_budget("binance", "acct-share", 600)
    assert limits.account_budget("binance", "acct-share", 600) is a
    assert limits.account_budget("binance", "other", 600) is not a

    async def run() -> float:
        bucket = limits.TokenBucket(1200, burst=1)  # 20/s: the second request waits ~50 ms
        await bucket.acquire()
        start = time.monotonic()
        waited = await bucket.acquire()
        assert waited > 0
        return time.monotonic() - start

    assert 0.03 < asyncio.run(run()) < 0.5


def test_used_weight_pauses_the_budget_near_the_limit():
    clock = FakeClock()
    bucket = limits.TokenBucket(6000, clock=clock)
    weight = limits.UsedWeight("binance", "w", bucket, limit=100, wall=lambda: 120.0 + 45.0)
    weight.observe({"X-MBX-USED-WEIGHT-1M": "50"})
    assert weight.used == 50 and bucket.try_take() == 0
    weight.observe({"x-mbx-used-weight-1m": "95"})
    assert bucket.try_take() == pytest.approx(15.0)  # until the wall-clock minute rolls over


def test_breaker_opens_for_retry_after_then_closes():
    clock = FakeClock()
    breaker = limits.Breaker(clock)
    assert not breaker.open
    breaker.trip(30, "418")
    assert breaker.open
    clock.t += 31
    assert not breaker.open
    assert limits.retry_after_s({"Retry-After": "7"}, 1, 60) == 7
    assert limits.retry_after_s({"retry-after": "900"}, 1, 60) == 60
    assert limits.retry_after_s({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 2, 60) == 2
    assert limits.retry_after_s(None, 2, 60) == 2


# ---------------------------------------------------------------- error mapping

@pytest.mark.parametrize("exc, status, kind, reason", [
    (ccxt.DDoSProtection('binance 429 Too Many Requests {"code":-1003}'), 429, "rate_limited", "rate_limited"),
    (ccxt.DDoSProtection('binance 418 I\'m a teapot {"code":-1003}'), 418, "banned", "venue_ip_banned"),
    (ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'), 400, "unknown",
     "duplicate_client_order_id"),
    (ccxt.InsufficientFunds("binance Account has insufficient balance for requested action."), 400, "rejected",
     "insufficient_funds"),
    (ccxt.OrderImmediatelyFillable("binance Order would immediately match and take."), 400, "rejected",
     "post_only_would_take"),
    (ccxt.InvalidOrder('binance {"code":-2010,"msg":"Order would immediately match and take."}'), 400, "rejected",
     "post_only_would_take"),
    (ccxt.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: NOTIONAL"}'), 400, "rejected",
     "below_min_notional"),
    (ccxt.InvalidOrder("binance order amount should be evenly divisible by lot size LOT_SIZE"), 400, "rejected",
     "lot_size"),
    (ccxt.OrderNotFound('binance {"code":-2013,"msg":"Order does not exist."}'), 400, "not_found",
     "not_found_at_venue"),
    (ccxt.InvalidNonce("binance Timestamp for this request is outside of the recvWindow."), 400, "clock_skew",
     "clock_skew"),
    (ccxt.OnMaintenance("binance System is under maintenance."), 200, "rejected", "venue_unreachable"),
    (ccxt.RequestTimeout("binance POST http://127.0.0.1:1/api/v3/order"), None, "unknown", "timeout"),
    (ccxt.ExchangeNotAvailable("binance POST http://x 503 Service Unavailable"), 503, "unknown", "http_5xx"),
    (ccxt.ExchangeError('binance {"code":-9999,"msg":"??"}'), 500, "unknown", "http_5xx"),
    (ccxt.ExchangeNotAvailable("binance POST http://127.0.0.1:1/api/v3/order"), None, "unknown", "network"),
    (ccxt.OperationFailed('binance {"code":-1006,"msg":"Unexpected response"}'), 400, "unknown",
     "venue_status_unknown"),
    (KeyError("orderId"), 200, "unknown", "unparsable"),
    (ccxt.BadResponse("binance not json"), 200, "unknown", "unparsable"),
    (ccxt.AuthenticationError('binance {"code":-1022,"msg":"Signature for this request is not valid."}'), 400,
     "rejected", "authentication_failed"),
    (ccxt.BadSymbol("binance does not have market symbol FOO/BAR"), None, "rejected", "bad_symbol"),
    (ccxt.ExchangeError('binance {"code":-1111,"msg":"Precision is over the maximum"}'), 400, "rejected",
     "venue_rejected"),
    (ccxt.ExchangeError("Invalid limit price post only"), 200, "rejected", "post_only_would_take"),
])
def test_error_mapping(exc, status, kind, reason):
    outcome = classify(exc, status)
    assert (outcome.kind, outcome.reason) == (kind, reason)


def test_unreachable_outcomes_count_toward_the_halt():
    assert classify(ccxt.RequestTimeout("t"), None).unreachable
    assert classify(ccxt.ExchangeNotAvailable("x"), 502).unreachable
    assert classify(ccxt.OnMaintenance("m"), 200).unreachable
    assert not classify(ccxt.InsufficientFunds("i"), 400).unreachable


def test_redact_strips_signed_urls_keys_and_secrets():
    text = ("binance GET http://127.0.0.1:5/api/v3/order?timestamp=1&symbol=BTCUSDT&signature=abcdef0123 "
            "RequestTimeout X-MBX-APIKEY: KEY123456 apiKey=KEY123456 secret=SUPERSECRET "
            "Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl SUPERSECRET")
    out = redact(text, ("KEY123456", "SUPERSECRET"))
    for leaked in ("abcdef0123", "KEY123456", "SUPERSECRET", "eyJhbGciOi", "timestamp=1"):
        assert leaked not in out
    assert "http://127.0.0.1:5/api/v3/order?****" in out
    assert len(redact("x" * 1000)) == 300


# ---------------------------------------------------------------- market rules on real ccxt markets

EXCHANGE_INFO_BTC = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "baseAssetPrecision": 8,
    "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
    "isSpotTradingAllowed": True, "isMarginTradingAllowed": False, "permissions": ["SPOT"],
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00010", "maxQty": "9000.00", "stepSize": "0.00001"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00010", "maxQty": "100.0", "stepSize": "0.00001"},
        {"filterType": "NOTIONAL", "minNotional": "10.00", "maxNotional": "9000000.00"},
    ],
}


@pytest.fixture(scope="module")
def binance_offline():
    ex = ccxt.binance({"options": {"defaultType": "spot", "crossMarginPairsData": [], "isolatedMarginPairsData": []}})
    ex.set_markets([ex.parse_market(EXCHANGE_INFO_BTC)])
    return ex


def order(qty="0.001", price="50000", order_type=OrderType.LIMIT, **kw) -> OrderRequest:
    return OrderRequest(kw.pop("cid", "c1"), "acct", "s", "binance", kw.pop("symbol", "BTC/USDT"), Side.BUY,
                        order_type, D(qty), D(price) if price is not None else None, **kw)


def test_precision_truncates_the_amount_and_rounds_the_price(binance_offline):
    p = prepare(binance_offline, order("0.00078565", "50000.006"))
    assert p.amount == D("0.00078") and p.price == D("50000.01")


@pytest.mark.parametrize("req, reason", [
    (order("0.000001"), "lot_size"),  # rounds to 0
    (order("0.00005"), "lot_size"),  # below minQty
    (order("10000"), "lot_size"),  # above maxQty
    (order("0.0002", "20000"), "below_min_notional"),  # 4 USDT < 10
    (order("0.001", None, OrderType.MARKET, post_only=True), "invalid_order"),
    (order("0.001", "50000", post_only=True, time_in_force=TimeInForce.IOC), "invalid_order"),
    (order("0.001", None), "invalid_order"),  # limit without a price
    (order("0.001", "50000", OrderType.STOP), "unsupported_order_type"),
    (order("0.001", symbol="DOGE/USDT"), "bad_symbol"),
])
def test_rules_refuse_before_sending(binance_offline, req, reason):
    with pytest.raises(Refused) as refused:
        prepare(binance_offline, req)
    assert refused.value.reason == reason


def test_market_notional_uses_the_last_price_seen(binance_offline):
    market = order("0.0002", None, OrderType.MARKET)
    assert prepare(binance_offline, market).amount == D("0.0002")  # no price known: the venue decides
    with pytest.raises(Refused, match="below_min_notional"):
        prepare(binance_offline, market, reference_price=D("20000"))
    assert prepare(binance_offline, market, reference_price=D("60000")).price is None


# ---------------------------------------------------------------- event logic (no network: structures in)

def venue_with_order(binance_offline, qty="0.002"):
    v = BinanceVenue(account="acct", api_key="k" * 8, secret="s" * 8, symbols=["BTC/USDT"])
    v.exchange = binance_offline
    v.submit(order(qty, "50000"))
    return v


def trade(tid, amount, order_id="42", price="50000"):
    return {"id": str(tid), "order": order_id, "symbol": "BTC/USDT", "side": "buy", "price": float(price),
            "amount": float(amount), "timestamp": 1_700_000_000_000 + tid, "takerOrMaker": "maker",
            "fee": {"cost": 0.01, "currency": "USDT"}}


def ccxt_order(status, filled, cid="c1", vid="42"):
    return {"id": vid, "clientOrderId": cid, "symbol": "BTC/USDT", "status": status, "filled": float(filled),
            "amount": 0.002, "timestamp": 1_700_000_000_000, "info": {}}


def test_fills_once_and_before_the_status_they_cause(binance_offline):
    v = venue_with_order(binance_offline)
    assert v.poll() == []  # queued, nothing reported yet
    v._apply_order(ccxt_order("open", 0))
    v._apply_trade(trade(1, "0.001"))
    v._apply_trade(trade(1, "0.001"))  # the same trade again (REST after ws): reported once
    v._apply_trade(trade(2, "0.001"))
    events = v.poll()
    kinds = [(type(e).__name__, getattr(e, "status", None)) for e in events]
    assert kinds == [("OrderEvent", OrderStatus.ACKNOWLEDGED), ("Fill", None),
                     ("OrderEvent", OrderStatus.PARTIALLY_FILLED), ("Fill", None), ("OrderEvent", OrderStatus.FILLED)]
    fills = [e for e in events if isinstance(e, Fill)]
    assert [f.fill_id for f in fills] == [stable_id("fill", "binance", "1"), stable_id("fill", "binance", "2")]
    assert events[0].venue_order_id == "42" and events[-1].filled_quantity == D("0.002")
    v._apply_order(ccxt_order("closed", "0.002"))  # the socket's FILLED after the trades: nothing new
    assert v.poll() == [] and v.open_orders() == []


def test_final_status_waits_for_its_fills(binance_offline):
    v = venue_with_order(binance_offline)
    v._apply_order(ccxt_order("canceled", "0.001"))  # cancelled after a partial fill we have not seen
    events = v.poll()
    assert [e.status for e in events] == [OrderStatus.ACKNOWLEDGED]
    assert len(v.open_orders()) == 1
    v._apply_trade(trade(7, "0.001"))
    events = v.poll()
    assert [type(e) for e in events] == [Fill, OrderEvent]
    assert events[1].status is OrderStatus.CANCELED and events[1].filled_quantity == D("0.001")


def test_trade_before_its_order_is_known_is_kept_until_it_is(binance_offline):
    v = venue_with_order(binance_offline)
    v._apply_trade(trade(3, "0.002", order_id="42"))  # the socket beat the create answer
    assert v.poll() == []
    v._apply_order(ccxt_order("closed", "0.002"))
    assert [getattr(e, "status", "fill") for e in v.poll()] == [OrderStatus.ACKNOWLEDGED, "fill", OrderStatus.FILLED]


def test_submit_refusals_come_back_through_poll(binance_offline):
    v = venue_with_order(binance_offline)
    v.poll()
    assert v.submit(order("0.00001", "50000", cid="tiny")) == []
    (event,) = v.poll()
    assert (event.status, event.reason, event.client_order_id) == (OrderStatus.REJECTED, "lot_size", "tiny")
    unstarted = BinanceVenue(account="acct", api_key="k" * 8, secret="s" * 8, symbols=["BTC/USDT"])
    unstarted.submit(order())
    assert [e.reason for e in unstarted.poll()] == ["venue_not_started"]
    replaced = v.replace("c1", D("0.003"), None, 5)
    assert replaced[0].reason == "replace_not_supported"


def test_constructor_refuses_missing_keys():
    with pytest.raises(ValueError, match="api key and secret"):
        BinanceVenue(account="acct", api_key="", secret="", symbols=["BTC/USDT"])
