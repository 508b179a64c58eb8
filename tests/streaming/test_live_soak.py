"""Soak: the stream trades the fake Binance through the real ccxt adapter, with faults injected at random and
the worker SIGKILLed in the middle; afterwards PostgreSQL's orders, fills and balances equal the exchange's
books exactly, and no client order id was ever accepted twice.

The fake exchange runs as a subprocess (it outlives the killed worker).  TRADELOOP_SOAK_S sets the trading
time (default 30 s, about 15 s before the kill and 15 s after; 600 for a ten-minute soak); TRADELOOP_SOAK_SEED the fault schedule.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.streaming.conftest import produce_ticks, sim_ticks, start_worker, wait_until
from trading.records import stable_id

SOAK_S = float(os.environ.get("TRADELOOP_SOAK_S", "30"))
SEED = int(os.environ.get("TRADELOOP_SOAK_SEED", "11"))
KEY, SECRET = "soak-key", "soak-secret-0123456789"
START = {"USDT": "1000000", "BTC": "20", "ETH": "200", "SOL": "5000"}
# faults that leave the venue's answer in doubt or slow it down, never one that halts the account
FAULTS = [
    ("http_5xx", {"route": "POST order", "accept": True}),
    ("http_5xx", {"route": "POST order", "accept": False}),
    ("timeout", {"route": "POST order", "seconds": 3, "accept": True}),
    ("rate_limit", {"retry_after": 1}),
    ("partial_fill", {"fraction": 0.5, "rest": "expire"}),
    ("ws_silent", {"duration": 4}),
]
STATUS = {"NEW": "ack", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
          "EXPIRED": "expired"}


def _env(stream_env, url: str) -> dict:
    env = dict(stream_env)
    env.update({
        "TRADELOOP_MODE": "sandbox", "TRADELOOP_VENUE": "binance", "TRADELOOP_VENUE_API_URL": url,
        "TRADELOOP_VENUE_KEY": "soak", "TRADELOOP_SECRETS_BACKEND": "env",
        "TRADELOOP_KEY_SOAK_VENUE": "binance", "TRADELOOP_KEY_SOAK_API_KEY": KEY,
        "TRADELOOP_KEY_SOAK_SECRET": SECRET, "TRADELOOP_KEY_SOAK_PERMISSIONS": "read,trade",
        "TRADELOOP_ROUTER_PARTICIPATION": "0",  # orders whole: the soak is about the venue path
        "TRADELOOP_VENUE_TIMEOUT_S": "2", "TRADELOOP_VENUE_STALE_AFTER_S": "2",
        "TRADELOOP_RECON_ORDERS_INTERVAL_S": "2",
    })
    return env


def _feed(bootstrap: str, prefix: str, ticks, stop: threading.Event, pace_s: float) -> None:
    """Publish ticks in small chunks at a steady pace until the list ends or ``stop`` is set."""
    for i in range(0, len(ticks), 200):
        if stop.is_set():
            return
        produce_ticks(bootstrap, prefix, ticks[i:i + 200])
        time.sleep(pace_s)


def _faults(ctl, stop: threading.Event, rng: random.Random, log: list) -> None:
    while not stop.wait(rng.uniform(2.0, 5.0)):
        kind, params = rng.choice(FAULTS)
        params = dict(params)
        duration = params.pop("duration", None)
        try:
            ctl.fault(kind, count=None if duration else 1, duration=duration, **params)
            log.append(kind)
        except Exception as exc:  # noqa: BLE001 -- the fake is gone: the test's end
            log.append(f"error {exc}")
            return


@pytest.mark.slow
def test_soak_with_faults_and_a_killed_worker(stream_env, kafka_bootstrap, engine, tmp_path):
    from tests.fakes.binance import DEFAULT_KEY  # noqa: F401 -- the module the subprocess runs
    from tests.fakes.core import Control, spawn

    state = tmp_path / "fake.json"
    proc, url = spawn("tests.fakes.binance", "--state-file", str(state), "--api-key", KEY, "--secret", SECRET)
    ctl = Control(url)
    try:
        for asset, qty in START.items():
            ctl.set_balance(asset, qty)
        ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
        ticks = sim_ticks(240, ex)
        first = {}
        for t in ticks:
            first.setdefault(t.symbol, t.price)
        for sym, price in first.items():
            ctl.set_price(sym, price)
        env = _env(stream_env, url)
        account, prefix = env["TRADELOOP_ACCOUNT"], env["TRADELOOP_TOPIC_PREFIX"]
        log = tmp_path / "worker.log"
        w = start_worker(env, log)
        w.wait_ready(120)

        rng, fault_log = random.Random(SEED), []
        stop = threading.Event()
        half = len(ticks) // 2
        pace = max(0.05, SOAK_S / 2 / (half / 200))
        feeder = threading.Thread(target=_feed, args=(kafka_bootstrap, prefix, ticks[:half], stop, pace))
        chaos = threading.Thread(target=_faults, args=(ctl, stop, rng, fault_log))
        feeder.start()
        chaos.start()
        feeder.join()
        wait_until(lambda: _count(engine, "SELECT count(*) FROM orders WHERE account=:a AND mode='sandbox'", account),
                   30, "orders before the kill", log)
        w.proc.send_signal(signal.SIGKILL)  # mid-flight: faults keep coming, the exchange keeps its books
        w.proc.wait(20)
        ctl.trade(list(first)[0], first[list(first)[0]], "0.001")  # the market moves while the worker is down

        w = start_worker(env, log)
        w.wait_ready(120)
        feeder = threading.Thread(target=_feed, args=(kafka_bootstrap, prefix, ticks[half:], stop, pace))
        feeder.start()
        feeder.join()
        stop.set()
        chaos.join()
        ctl.clear_faults()

        # quiet: every order the worker sent is settled (nothing open at ours or unknown), reconciled
        wait_until(lambda: _settled(engine, account), 90, "all orders settled", log)
        risk = w.get("/risk")
        books = ctl.books()
        w.stop()
    finally:
        proc.kill()
        proc.wait(10)

    assert len(fault_log) >= 3, fault_log
    _assert_books_equal(engine, account, books, fault_log)
    assert risk["state"] == "active", (risk["state"], risk["state_causes"], fault_log)
    with engine.connect() as c:
        journal = dict(c.execute(sa.text("SELECT e.status, count(*) FROM order_events e JOIN orders o USING"
                                         " (client_order_id) WHERE o.account=:a GROUP BY 1"), {"a": account}).all())
    print(f"soak: {len(books['orders'])} orders and {len(books['trades'])} fills at the exchange, faults "
          f"{fault_log}, journal {journal}")


def _count(engine, sql: str, account: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(sql), {"a": account}).scalar()


def _history(engine, cids: set[str]) -> dict:
    """What PostgreSQL holds of these orders: their rows and journals, the reconciliation runs naming them."""
    with engine.connect() as c:
        out = {}
        for cid in sorted(cids):
            out[cid] = {
                "order": [tuple(r) for r in c.execute(sa.text(
                    "SELECT side, quantity, status, filled_quantity, venue_order_id, created_at FROM orders"
                    " WHERE client_order_id=:c"), {"c": cid})],
                "events": [tuple(r) for r in c.execute(sa.text(
                    "SELECT status, filled_quantity, reason, ts FROM order_events"
                    " WHERE client_order_id=:c ORDER BY event_no"), {"c": cid})],
                "fills": [tuple(r) for r in c.execute(sa.text(
                    "SELECT fill_id, quantity, price, ts FROM trades WHERE client_order_id=:c"), {"c": cid})],
                "recon": [tuple(r) for r in c.execute(sa.text(
                    "SELECT kind, ts, verdict FROM reconciliation_runs WHERE differences::text LIKE :p"),
                    {"p": f"%{cid}%"})],
            }
        return out


def _settled(engine, account: str) -> bool:
    return _count(engine, "SELECT count(*) FROM orders WHERE account=:a AND mode='sandbox' AND status IN"
                          " ('new', 'submitting', 'unknown', 'cancel_pending')", account) == 0


def _assert_books_equal(engine, account: str, books: dict, fault_log: list) -> None:
    with engine.connect() as c:
        orders = {r[0]: (r[1], Decimal(r[2])) for r in c.execute(sa.text(
            "SELECT client_order_id, status, filled_quantity FROM orders WHERE account=:a AND mode='sandbox'"),
            {"a": account})}
        trades = {r[0]: (r[1], Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), r[5], r[6]) for r in c.execute(sa.text(
            "SELECT fill_id, client_order_id, price, quantity, fee, fee_currency, side FROM trades"
            " WHERE account=:a AND mode='sandbox'"), {"a": account})}
    venue_orders = {cid: o for cid, o in books["orders"].items()}
    assert venue_orders, f"nothing reached the exchange (faults: {fault_log})"
    # no client order id accepted twice, and every order at the exchange is ours with the same state
    assert all(n == 1 for n in books["accepted"].values()), {k: n for k, n in books["accepted"].items() if n != 1}
    for cid, o in venue_orders.items():
        assert cid in orders, f"{cid} is at the exchange but not in PostgreSQL"
        assert orders[cid] == (STATUS[o["status"]], Decimal(o["executedQty"])), (cid, orders[cid], o)
    # orders we hold as sent are at the exchange (the rest were refused before sending, or never sent)
    sent = {cid for cid, (st, _) in orders.items() if st not in ("rejected", "canceled")}
    assert sent <= set(venue_orders), sent - set(venue_orders)
    # fills: the same executions, once each
    venue_trades = {stable_id("fill", "binance", t["trade_id"]): t for t in books["trades"]}
    assert set(trades) == set(venue_trades), (len(trades), len(venue_trades))
    for fid, t in venue_trades.items():
        cid, price, qty, fee, fee_ccy, side = trades[fid]
        assert (cid, price, qty, fee, fee_ccy, side) == (
            t["client_order_id"], Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"]),
            t["commission_asset"], t["side"].lower()), (fid, trades[fid], t, _history(engine, {cid, t["client_order_id"]}))
    # balances: the exchange's equal the starting balances plus every stored fill
    expect = {a: Decimal(q) for a, q in START.items()}
    for cid, price, qty, fee, fee_ccy, side in trades.values():
        sym = next(t["symbol"] for t in books["trades"] if t["client_order_id"] == cid)
        base, quote = sym.split("/") if "/" in sym else (sym[:-4], sym[-4:])
        sign = 1 if side == "buy" else -1
        expect[base] = expect.get(base, Decimal(0)) + sign * qty
        expect[quote] = expect.get(quote, Decimal(0)) - sign * qty * price
        expect[fee_ccy] = expect.get(fee_ccy, Decimal(0)) - fee
    venue_bal = {a: Decimal(v["free"]) + Decimal(v["locked"]) for a, v in books["balances"][KEY].items()}
    for asset, qty in expect.items():
        assert venue_bal.get(asset, Decimal(0)) == qty, (asset, venue_bal.get(asset), qty, json.dumps(fault_log))
