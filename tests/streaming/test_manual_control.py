"""Manual orders and cancels as signed control messages, against a real worker (Faust subprocess) on the real
broker and PostgreSQL: a manual order takes the strategies' path (risk engine, OMS, paper venue) under the slot
``manual``, is stored in orders/trades and audited with the signer's identity; a resting limit order is canceled
through the OMS; risk refusals, unknown or final orders and forgeries are refused with the reason. A flood of
forged messages writes a bounded number of audit rows, every one of them counted."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.streaming.conftest import post_control, produce_ticks, signed_control, sim_ticks, start_worker, wait_until

SYMBOL = "BTC/USDT"
ROWS, WINDOW_S = 5, 4.0  # the refused-audit budget of this worker: small, so the window closes within the test
FLOOD = 200


def _one(engine, sql: str, **params):
    with engine.connect() as c:
        return c.execute(sa.text(sql), params).first()


def _all(engine, sql: str, **params) -> list:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(sql), params).all()]


def test_manual_orders_cancels_and_refusals_through_the_real_worker(stream_env, engine, kafka_bootstrap, tmp_path):
    env = {**stream_env, "TRADELOOP_CONTROL_REFUSED_AUDIT_ROWS": str(ROWS),
           "TRADELOOP_CONTROL_REFUSED_WINDOW_S": str(WINDOW_S)}
    account, prefix, ex = env["TRADELOOP_ACCOUNT"], env["TRADELOOP_TOPIC_PREFIX"], env["TRADELOOP_STREAM_EXCHANGE"]
    ticks = sim_ticks(6, ex)
    first, later = ticks[:400], ticks[400:]
    w = start_worker(env, tmp_path / "worker.log")
    try:
        w.wait_ready()
        produce_ticks(kafka_bootstrap, prefix, first)  # prices: the risk engine needs a reference price
        w.wait_ticks(len(first))
        last = [t.price for t in first if t.symbol == SYMBOL][-1]

        # 1. a market order: accepted by risk, sent by the OMS, filled by the next trade print
        status, answer = post_control(w.url, "manual_order", signed_control(
            env, "manual_order", identity="user:trader1", reason="rebalance by hand", symbol=SYMBOL, side="buy",
            quantity="0.01", order_type="market"))
        assert status == 200, answer
        market_id = answer["client_order_id"]
        assert answer["order_state"] == "ack" and answer["state"] == "active"

        # 2. a limit order 5% under the market rests (within the 10% price collar)
        limit_px = (last * Decimal("0.95")).quantize(Decimal("0.01"))
        status, answer = post_control(w.url, "manual_order", signed_control(
            env, "manual_order", identity="user:trader1", symbol=SYMBOL, side="buy", quantity="0.02",
            order_type="limit", price=str(limit_px)))
        assert status == 200 and answer["order_state"] == "ack", answer
        limit_id = answer["client_order_id"]

        produce_ticks(kafka_bootstrap, prefix, later)
        w.wait_ticks(len(ticks))
        fill = wait_until(lambda: _one(engine, "SELECT strategy, symbol, side, quantity FROM trades"
                                               " WHERE account = :a AND client_order_id = :c", a=account, c=market_id),
                          30, "the manual market order's fill", w.log)
        assert tuple(fill) == ("manual", SYMBOL, "buy", Decimal("0.01"))
        order = wait_until(lambda: _one(engine, "SELECT strategy, order_type, status FROM orders WHERE account = :a"
                                                " AND client_order_id = :c AND status = 'filled'", a=account,
                                        c=market_id), 30, "the manual order filled in orders", w.log)
        assert tuple(order) == ("manual", "market", "filled")
        # attributed: the audit row of the command names the operator and the order
        audit = _all(engine, "SELECT actor, identity, source, reason, details->>'client_order_id',"
                             " details->>'outcome' FROM audit_log WHERE scope = :s AND action = 'manual_order'"
                             " ORDER BY ts", s=f"account:{account}")
        assert audit[0] == ("user:trader1", "user:trader1", "10.9.8.7", "rebalance by hand", market_id, "applied")
        assert audit[1][4] == limit_id
        pos = wait_until(lambda: _one(engine, "SELECT quantity FROM positions WHERE account = :a AND"
                                              " strategy = 'manual' AND symbol = :s", a=account, s=SYMBOL),
                         30, "the manual position", w.log)
        assert pos[0] == Decimal("0.01")

        # 3. the limit order is still open; a cancel through the OMS cancels it, a second is refused
        assert _one(engine, "SELECT status FROM orders WHERE client_order_id = :c", c=limit_id)[0] == "ack"
        assert limit_id in {o["client_order_id"] for o in w.get("/orders")["open_orders"]}
        status, answer = post_control(w.url, "cancel", signed_control(env, "cancel", identity="user:trader2",
                                                                      client_order_id=limit_id, reason="changed mind"))
        assert status == 200 and answer["order_state"] == "canceled", answer
        wait_until(lambda: _one(engine, "SELECT 1 FROM orders WHERE client_order_id = :c AND status = 'canceled'",
                                c=limit_id), 15, "the canceled order stored", w.log)
        status, answer = post_control(w.url, "cancel", signed_control(env, "cancel", client_order_id=limit_id))
        assert status == 400 and f"order '{limit_id}' is already canceled" in answer["error"], answer
        status, answer = post_control(w.url, "cancel", signed_control(env, "cancel", client_order_id="no-such-id"))
        assert status == 400 and "no open order 'no-such-id'" in answer["error"], answer
        cancels = _all(engine, "SELECT identity, details->>'client_order_id', details->>'outcome' FROM audit_log"
                               " WHERE scope = :s AND action = 'cancel' ORDER BY ts", s=f"account:{account}")
        assert cancels == [("user:trader2", limit_id, "applied"), ("user:tester", limit_id, "refused"),
                           ("user:tester", "no-such-id", "refused")]

        # 4. HALTED: the risk engine refuses a manual order, and the answer says why
        status, _ = post_control(w.url, "kill_switch", signed_control(env, "kill_switch", reason="drill"))
        assert status == 200
        status, answer = post_control(w.url, "manual_order", signed_control(
            env, "manual_order", identity="user:trader1", symbol=SYMBOL, side="buy", quantity="0.01"))
        assert status == 400 and "account_halted" in answer["error"] and "drill" in answer["error"], answer
        refused = _one(engine, "SELECT identity, details->>'risk_reason' FROM audit_log WHERE scope = :s AND"
                               " action = 'manual_order' AND details->>'outcome' = 'refused'", s=f"account:{account}")
        assert tuple(refused) == ("user:trader1", "account_halted")
        assert _one(engine, "SELECT count(*) FROM orders WHERE account = :a AND strategy = 'manual'", a=account)[0] == 2

        # 5. unsigned and forged manual orders are refused before anything else
        status, answer = post_control(w.url, "manual_order", b'{"action": "manual_order", "symbol": "BTC/USDT"}')
        assert (status, answer["reason"]) == (401, "unsigned")

        # 6. a flood of forgeries: each counted, at most ROWS audit rows per window, the rest in one summary row
        t0 = time.monotonic()
        for i in range(FLOOD):
            status, answer = post_control(w.url, "manual_order", signed_control(
                env, "manual_order", identity="user:admin", key=b"f" * 32, symbol=SYMBOL, side="buy",
                quantity=str(i + 1)))
            assert (status, answer["reason"]) == (401, "bad_signature")
        windows = int((time.monotonic() - t0) // WINDOW_S) + 1  # windows the flood spanned (1 on this machine)
        metrics = w.text("/metrics")
        assert f'tradeloop_control_refused_total{{reason="bad_signature"}} {float(FLOOD)}' in metrics
        scope = f"account:{account}"
        rows = _one(engine, "SELECT count(*) FROM audit_log WHERE scope = :s AND action = 'control_refused'"
                            " AND reason = 'bad_signature'", s=scope)[0]
        assert ROWS <= rows <= ROWS * windows, (rows, windows)
        summarised = wait_until(lambda: _one(engine, "SELECT sum((details->>'suppressed')::int) FROM audit_log WHERE"
                                                     " scope = :s AND action = 'control_refused_summary' AND reason ="
                                                     " 'bad_signature' HAVING sum((details->>'suppressed')::int) >= :n",
                                             s=scope, n=FLOOD - rows), WINDOW_S + 10, "the summary row", w.log)
        assert rows + summarised[0] == FLOOD  # every forgery is in the audit log: one by one or in the summary
        assert w.get("/risk")["state"] == "halted"
    finally:
        w.stop()


def test_refusal_budget_counts_every_refusal_and_closes_windows():
    from streaming.refusals import RefusalBudget

    now = [0.0]
    budget = RefusalBudget(rows=3, window_s=60, clock=lambda: now[0], wall_ns=lambda: int(now[0] * 1e9))
    admitted = [budget.admit("bad_signature", f"http:10.0.0.{i}")[0] for i in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert budget.admit("replayed", "topic:t.control") == (True, None)  # its own budget: not hidden by the flood
    now[0] = 59.9
    assert budget.due() == []
    now[0] = 60.0
    write, closed = budget.admit("bad_signature", "topic:t.control")  # the next refusal closes the old window
    assert write and closed is not None and (closed.written, closed.suppressed) == (3, 7)
    assert dict(closed.transports) == {"http": 7}
    for _ in range(5):
        budget.admit("bad_signature", "http:x")
    now[0] = 120.0
    [due] = budget.due()  # no refusal came to close it: a timer asks
    assert (due.reason, due.written, due.suppressed) == ("bad_signature", 3, 3)
    assert budget.due() == [] and "replayed" not in budget.windows  # a window without suppressed refusals: dropped


class _Exchange:
    """The live venue port (what the ccxt adapters implement), recording what reaches it; answers nothing."""

    external = True

    def __init__(self) -> None:
        self.sent, self.canceled = [], []

    def submit(self, order):
        self.sent.append(order.client_order_id)
        return []

    def cancel(self, cid, ts):
        self.canceled.append(cid)
        return []

    def replace(self, *a):
        return []

    def on_tick(self, tick):
        return []

    def on_bar(self, bar):
        return []

    def open_orders(self, symbol=None):
        return []


def test_on_an_exchange_a_manual_order_leaves_only_after_its_intent_is_stored():
    """Sandbox/live: the same OMS outbox as a strategy's order -- journalled, drained (stored), then sent."""
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.oms.manual import ManualOrderError, parse_manual_order
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    inst = {i.symbol: i for i in SimVenue(SimConfig(seed=7)).instruments()}
    venue = _Exchange()
    trader = Trader("acct", {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100_000),
                    limits=RiskLimits(), instruments=inst, venue=venue, mode="sandbox")
    for t in sim_ticks(1)[:50]:
        trader.on_tick(t)
    order = parse_manual_order({"symbol": SYMBOL, "side": "sell", "quantity": "0.5", "order_type": "limit",
                                "price": "43000"})
    cid = trader.manual_order(order, "cmd-1").client_order_id
    assert venue.sent == [] and trader.order_status(cid) == "new"
    batch = trader.drain()  # what the worker stores before anything leaves
    assert [(o.client_order_id, o.strategy) for o in batch.orders] == [(cid, "manual")]
    trader.release()
    assert venue.sent == [cid] and trader.order_status(cid) == "submitting"
    with pytest.raises(ManualOrderError, match="already sent"):
        trader.manual_order(order, "cmd-1")  # the same command again: never sent twice
    trader.cancel_order(cid)
    assert venue.canceled == [cid] and trader.order_status(cid) == "cancel_pending"
