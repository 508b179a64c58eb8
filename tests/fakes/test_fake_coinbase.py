"""The fake Coinbase Advanced Trade driven by the REAL ccxt 4.5.90 clients (ccxt.async_support.coinbase,
ccxt.pro.coinbase): ccxt signs ES256 JWTs, sends and parses; the fake verifies the JWT with `cryptography`,
matches and answers.  Faults map to the ccxt exceptions docs/research/ccxt-live-venues.md §3 predicts."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from decimal import Decimal

import ccxt
import pytest

from tests.fakes.coinbase import FakeCoinbase, coinbase_client, make_cloud_key
from tests.fakes.core import Control, spawn

@pytest.fixture(scope="module")
def key():
    return make_cloud_key()  # EC key generation once per module


@pytest.fixture
def fake(key):
    f = FakeCoinbase(api_key=key[0], secret=key[1])
    f.start()
    yield f
    f.stop()


def run(fake, body, pro=False, load=True, api_key=None, secret=None, **config):
    async def main():
        ex = coinbase_client(fake.base_url, api_key or fake.api_key, secret or fake.secret, pro=pro, **config)
        try:
            if load:
                await ex.load_markets()
            return await body(ex)
        finally:
            await ex.close()
    return asyncio.run(main())


def bal(fake, asset):
    row = fake.books()["balances"][fake.api_key][asset]
    return Decimal(row["free"]), Decimal(row["locked"])


# ---- markets, orders, fills, balances -------------------------------------------------------------------------

def test_load_markets_with_jwt_auth(fake):
    markets = run(fake, lambda ex: asyncio.sleep(0, ex.markets))
    assert sorted(markets) == ["BTC/USD", "ETH/USD", "SOL/USD"]
    btc = markets["BTC/USD"]
    assert btc["id"] == "BTC-USD" and btc["spot"] and btc["active"]
    assert btc["precision"] == {"amount": 0.00001, "price": 0.01} and btc["limits"]["cost"]["min"] == 5.0
    assert btc["taker"] == 0.001  # from the signed transaction_summary call
    assert ("GET", "transaction_summary") in fake.ex.requests


def test_market_and_limit_orders_fill_and_are_fetched_by_id(fake):
    usd0 = bal(fake, "USD")[0]

    async def body(ex):
        sell = await ex.create_order("BTC/USD", "market", "sell", 0.01, None, {"client_order_id": "cb-m1"})
        buy = await ex.create_order("BTC/USD", "market", "buy", 0.02, 50000, {"client_order_id": "cb-m2"})
        limit = await ex.create_order("BTC/USD", "limit", "buy", 0.01, 49000, {"client_order_id": "cb-l1"})
        return [await ex.fetch_order(o["id"], "BTC/USD") for o in (sell, buy, limit)]
    sell, buy, limit = run(fake, body)
    assert (sell["clientOrderId"], sell["status"], sell["filled"], sell["average"]) == ("cb-m1", "closed", 0.01, 50000)
    assert sell["fee"] == {"cost": "0.5", "currency": "USD"}  # ccxt's coinbase parse_order leaves it a string
    assert (buy["status"], buy["filled"]) == ("closed", 0.02)  # quote_size 1000 at 50000
    assert (limit["status"], limit["price"], limit["amount"], limit["timeInForce"]) == ("open", 49000, 0.01, "GTC")
    assert bal(fake, "USD") == (usd0 + Decimal("499.5") - Decimal("1001") - Decimal("490.49"), Decimal("490.49"))
    fills = fake.trade("BTC/USD", "48000", "1")
    assert [(f.client_order_id, f.price, f.is_maker) for f in fills] == [("cb-l1", Decimal("49000"), True)]
    assert fake.books()["orders"]["cb-l1"]["status"] == "FILLED"


def test_post_only_ioc_fok(fake):
    async def body(ex):
        po = await ex.create_order("ETH/USD", "limit", "sell", 1, 3100, {"postOnly": True, "client_order_id": "po1"})
        with pytest.raises(ccxt.ExchangeError, match="POST_ONLY"):
            await ex.create_order("ETH/USD", "limit", "sell", 1, 2900, {"postOnly": True, "client_order_id": "po2"})
        ioc = await ex.create_order("ETH/USD", "limit", "buy", 1, 3001, {"timeInForce": "IOC",
                                                                         "client_order_id": "i1"})
        miss = await ex.create_order("ETH/USD", "limit", "buy", 1, 2999, {"timeInForce": "IOC",
                                                                          "client_order_id": "i2"})
        fok = await ex.create_order("ETH/USD", "limit", "buy", 1, 3001, {"timeInForce": "FOK",
                                                                         "client_order_id": "f1"})
        return [await ex.fetch_order(o["id"], "ETH/USD") for o in (po, ioc, miss, fok)]
    po, ioc, miss, fok = run(fake, body)
    assert po["postOnly"] is True and po["status"] == "open"
    assert (ioc["status"], ioc["filled"], ioc["timeInForce"]) == ("closed", 1.0, "IOC")
    assert (miss["status"], miss["filled"]) == ("canceled", 0.0)  # EXPIRED -> ccxt "canceled"
    assert (fok["status"], fok["filled"]) == ("closed", 1.0)
    assert fake.accepted_count("po2") == 0


def test_cancel_open_orders_fills_since_and_balance(fake):
    async def body(ex):
        a = await ex.create_order("SOL/USD", "limit", "buy", 1, 140, {"client_order_id": "oo-a"})
        await ex.create_order("BTC/USD", "limit", "sell", 0.01, 60000, {"client_order_id": "oo-b"})
        open_sol = await ex.fetch_open_orders("SOL/USD")
        open_all = await ex.fetch_open_orders()
        canceled = await ex.cancel_order(a["id"], "SOL/USD")
        with pytest.raises(ccxt.BadRequest):
            await ex.cancel_order(a["id"], "SOL/USD")  # no longer open
        after_cancel = await ex.fetch_open_orders("SOL/USD")
        await ex.create_order("SOL/USD", "market", "sell", 1, None, {"client_order_id": "t-1"})
        await asyncio.sleep(0.01)
        since = ex.milliseconds()
        await asyncio.sleep(0.01)
        await ex.create_order("SOL/USD", "market", "sell", 2, None, {"client_order_id": "t-2"})
        return (open_sol, open_all, canceled, after_cancel, await ex.fetch_my_trades("SOL/USD", since),
                await ex.fetch_my_trades("SOL/USD"), await ex.fetch_balance())
    open_sol, open_all, canceled, after_cancel, recent, everything, balance = run(fake, body)
    assert [o["clientOrderId"] for o in open_sol] == ["oo-a"]
    assert sorted(o["clientOrderId"] for o in open_all) == ["oo-a", "oo-b"]
    assert canceled["id"] == open_sol[0]["id"] and after_cancel == []
    assert [(t["amount"], t["side"], t["takerOrMaker"]) for t in recent] == [(2.0, "sell", "taker")]
    assert len(everything) == 2
    assert balance["SOL"] == {"free": 97.0, "used": 0.0, "total": 97.0}
    assert balance["BTC"]["used"] == 0.01 and balance["USD"]["used"] == 0.0


# ---- refusals --------------------------------------------------------------------------------------------------

def test_a_jwt_from_another_key_is_refused(fake):
    other_name, other_pem = make_cloud_key(fake.api_key)  # right name, wrong private key
    with pytest.raises(ccxt.AuthenticationError):
        run(fake, lambda ex: ex.fetch_balance(), secret=other_pem)
    unknown_name, unknown_pem = make_cloud_key("organizations/x/apiKeys/unknown")
    with pytest.raises(ccxt.AuthenticationError):
        run(fake, lambda ex: ex.fetch_balance(), api_key=unknown_name, secret=unknown_pem)


def test_repeated_client_order_id_returns_the_original_order(fake):
    async def body(ex):
        first = await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "dup-1"})
        again = await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "dup-1"})
        return first, again
    first, again = run(fake, body)
    assert again["id"] == first["id"] and fake.accepted_count("dup-1") == 1
    assert bal(fake, "USD")[1] == Decimal("0.01") * 40000 * Decimal("1.001")  # locked once


def test_unknown_order_and_insufficient_funds(fake):
    fake.set_balance("USD", "10")

    async def body(ex):
        with pytest.raises(ccxt.ExchangeError, match="not found") as info:
            await ex.fetch_order("00000000-0000-0000-0000-00000000ffff", "BTC/USD")
        assert not isinstance(info.value, ccxt.OrderNotFound)  # research doc §3: ccxt's pattern never matches
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "ins-1"})
        fake.fault("insufficient_balance")
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order("BTC/USD", "market", "sell", 0.01, None, {"client_order_id": "ins-2"})
    run(fake, body)
    assert fake.accepted_count("ins-1") == fake.accepted_count("ins-2") == 0


# ---- scripted faults -------------------------------------------------------------------------------------------

def test_5xx_after_accept_then_resend_returns_the_order(fake):
    async def body(ex):
        since = ex.milliseconds() - 1000
        fake.fault("http_5xx")
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "5xx-1"})
        # no lookup by client id on Coinbase: list recent orders and match it (research doc §3)
        listed = [o for o in await ex.fetch_orders("BTC/USD", since) if o["clientOrderId"] == "5xx-1"]
        again = await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "5xx-1"})
        return listed, again, await ex.fetch_order(again["id"], "BTC/USD")
    listed, again, found = run(fake, body)
    assert [o["id"] for o in listed] == [again["id"]]
    assert (found["clientOrderId"], found["status"]) == ("5xx-1", "open")
    assert fake.accepted_count("5xx-1") == 1


@pytest.mark.parametrize("accept", [True, False])
def test_timeout_order_accepted_or_not(fake, accept):
    cid = f"to-{accept}"

    async def body(ex):
        fake.fault("timeout", seconds=1.0, accept=accept)
        with pytest.raises(ccxt.RequestTimeout):
            await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": cid})
        return await ex.fetch_open_orders("BTC/USD")
    open_orders = run(fake, body, timeout=300)
    assert [o["clientOrderId"] for o in open_orders] == ([cid] if accept else [])
    assert fake.accepted_count(cid) == (1 if accept else 0)


def test_rate_limit_maintenance_and_clock_skew(fake):
    async def body(ex):
        fake.fault("rate_limit", retry_after=2)
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_balance()
        retry = ex.last_response_headers.get("Retry-After")
        fake.fault("maintenance", duration=30)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_balance()
        fake.clear_faults()
        fake.fault("clock_skew", offset_ms=300_000)  # past the JWT's 120 s life
        with pytest.raises(ccxt.AuthenticationError):
            await ex.fetch_balance()
        fake.clear_faults()
        return retry, await ex.fetch_balance()
    retry, balance = run(fake, body)
    assert retry == "2" and balance["BTC"]["free"] == 1.0


def test_partial_fill_rest_fills_on_a_later_trade(fake):
    async def body(ex):
        fake.fault("partial_fill", fraction="0.25", rest="rest")
        o = await ex.create_order("ETH/USD", "market", "sell", 2, None, {"client_order_id": "pf-1"})
        partly = await ex.fetch_order(o["id"], "ETH/USD")
        fake.trade("ETH/USD", "2990", "10")
        return partly, await ex.fetch_order(o["id"], "ETH/USD")
    partly, done = run(fake, body)
    assert (partly["status"], partly["filled"]) == ("open", 0.5)
    assert (done["status"], done["filled"]) == ("closed", 2.0)
    assert done["average"] == pytest.approx((0.5 * 3000 + 1.5 * 2990) / 2)


# ---- the user channel (ccxt.pro watch_orders) ----------------------------------------------------------------------

async def _until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.01)


def test_watch_orders_sees_new_fill_and_cancel(fake):
    async def body(ex):
        seen = []
        first = asyncio.ensure_future(ex.watch_orders("BTC/USD"))
        await _until(lambda: fake.ws_clients() == 1)
        o = await ex.create_order("BTC/USD", "limit", "buy", 0.02, 49000, {"client_order_id": "ws-1"})
        seen.append([(x["clientOrderId"], x["status"], x["filled"]) for x in await asyncio.wait_for(first, 5)])
        nxt = asyncio.ensure_future(ex.watch_orders("BTC/USD"))
        await asyncio.sleep(0.05)
        fake.trade("BTC/USD", "48000", "0.01")
        seen.append([(x["clientOrderId"], x["status"], x["filled"]) for x in await asyncio.wait_for(nxt, 5)])
        nxt = asyncio.ensure_future(ex.watch_orders("BTC/USD"))
        await asyncio.sleep(0.05)
        await ex.cancel_order(o["id"], "BTC/USD")
        seen.append([(x["clientOrderId"], x["status"], x["filled"]) for x in await asyncio.wait_for(nxt, 5)])
        return seen
    seen = run(fake, body, pro=True)
    assert seen[0][-1] == ("ws-1", "open", 0.0)
    assert seen[1][-1] == ("ws-1", "open", 0.01)
    assert seen[2][-1] == ("ws-1", "canceled", 0.01)


def test_ws_silent_and_a_bad_jwt(fake):
    async def body(ex):
        first = asyncio.ensure_future(ex.watch_orders("BTC/USD"))
        await _until(lambda: fake.ws_clients() == 1)
        fake.fault("ws_silent", duration=30)
        await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "s-1"})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(first), 0.3)
        connected = fake.ws_clients()
        fake.clear_faults()
        await ex.create_order("BTC/USD", "limit", "buy", 0.01, 40000, {"client_order_id": "s-2"})
        got = await asyncio.wait_for(first, 5)
        return connected, [o["clientOrderId"] for o in got], got[-1]["info"]
    connected, ids, info = run(fake, body, pro=True)
    assert connected == 1 and ids[-1] == "s-2" and "s-1" not in ids

    _, other_pem = make_cloud_key(fake.api_key)

    # load_markets signs REST calls with the right key; only the websocket subscription uses the wrong one.
    # ccxt.pro coinbase raises the {"type":"error"} inside its message callback, so watch_orders never resolves:
    # the adapter needs its own timeout there.
    async def refused_ws(ex):
        ex.secret = other_pem
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ex.watch_orders("BTC/USD"), 1.0)
    run(fake, refused_ws, pro=True)
    assert fake.ws_clients() == 0 and fake.ws_errors == ["authentication failure"]


# ---- the subprocess form ---------------------------------------------------------------------------------------

def test_subprocess_keeps_state_and_key_across_restarts(tmp_path):
    state, keyfile = tmp_path / "cb.json", tmp_path / "key.json"

    def start():
        return spawn("tests.fakes.coinbase", "--state-file", str(state), "--key-file", str(keyfile))

    proc, url = start()
    try:
        key = json.loads(keyfile.read_text())

        class Remote:
            base_url = url
            api_key, secret = key["api_key"], key["secret"]

        async def body(ex):
            return await ex.create_order("BTC/USD", "limit", "buy", 0.01, 41000, {"client_order_id": "sp-1"})
        placed = run(Remote, body)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, url = start()
    try:
        Remote.base_url = url
        ctl = Control(url)
        assert ctl.books()["orders"]["sp-1"]["venue_order_id"] == placed["id"]
        ctl.trade("BTC/USD", "40000", "1")

        async def check(ex):
            return await ex.fetch_order(placed["id"], "BTC/USD")
        assert run(Remote, check)["status"] == "closed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
