"""The gateway's control path against a real worker (Faust subprocess on the session's broker and PostgreSQL):
a risk officer's kill switch through /api/v1 halts the worker, and the audit row names the authenticated user; a
trader's manual order reaches the worker's risk engine and OMS and fills (a viewer's is refused by the gateway)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from deploy.secrets import PASSPHRASE_ENV

from tests.gateway.conftest import bearer, gateway_settings, make_client, new_user, login
from tests.streaming.conftest import TOKEN, stream_env, worker_factory  # noqa: F401 -- fixtures used below
from tests.streaming.conftest import produce_ticks, sim_ticks, wait_until


@pytest.mark.slow
def test_kill_switch_resume_and_manual_order_through_the_gateway_reach_the_real_worker(  # noqa: F811
        worker_factory, stream_env, engine, pg_url, kafka_bootstrap, monkeypatch):  # noqa: F811
    from deploy.secrets import control_signing_key

    # the gateway and the worker share a home (one key file, one passphrase: the control-signing key), as under
    # `tradeloop up`, which hands its passphrase to the services it starts
    home = Path(stream_env["TRADELOOP_HOME"])
    monkeypatch.setenv(PASSPHRASE_ENV, stream_env["TRADELOOP_SECRETS_PASSPHRASE"])
    account = stream_env["TRADELOOP_ACCOUNT"]
    settings = gateway_settings(home, pg_url, int(stream_env["TRADELOOP_WORKER_PORT"]), control_token=TOKEN,
                                account=account)
    control_signing_key(settings, create=True)  # `up` creates it before starting the worker
    w = worker_factory()
    with make_client(settings, engine) as client:
        officer, viewer = new_user(engine, "risk_officer"), new_user(engine, "viewer")
        officer_auth = bearer(login(client, officer).json()["access_token"])
        viewer_auth = bearer(login(client, viewer).json()["access_token"])

        refused = client.post("/api/v1/control/kill-switch", headers=viewer_auth, json={"reason": "not mine"})
        assert refused.status_code == 403 and w.get("/risk")["state"] != "halted"

        resp = client.post("/api/v1/control/kill-switch", headers=officer_auth, json={"reason": "gateway drill"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["worker"]["state"] == "halted" and w.get("/risk")["state"] == "halted"
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT actor, reason FROM audit_log WHERE scope = :s AND action = 'kill_switch'"),
                               {"s": f"account:{account}"}).one()
        assert tuple(row) == (officer, "gateway drill")
        risk = client.get("/api/v1/risk", headers=viewer_auth).json()
        assert risk["account"] == account and risk["worker"]["state"] == "halted"

        back = client.post("/api/v1/control/resume", headers=officer_auth, json={"reason": "drill over"})
        assert back.status_code == 200 and back.json()["worker"]["state"] == "active"

        # a manual order: a viewer may not; a trader's goes through the worker's risk engine, which refuses it
        # while the worker has seen no price (the worker's reason passed on in one line), then fills it
        trader = new_user(engine, "trader")
        trader_auth = bearer(login(client, trader).json()["access_token"])
        order = {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.01", "reason": "by hand"}
        assert client.post("/api/v1/control/orders", headers=viewer_auth, json=order).status_code == 403
        unpriced = client.post("/api/v1/control/orders", headers=trader_auth, json=order)
        assert unpriced.status_code == 409, unpriced.text
        assert unpriced.json()["error"].startswith("the worker refused manual_order") and \
            "no_reference_price" in unpriced.json()["error"]
        ticks = sim_ticks(4, stream_env["TRADELOOP_STREAM_EXCHANGE"])
        produce_ticks(kafka_bootstrap, stream_env["TRADELOOP_TOPIC_PREFIX"], ticks[:300])
        w.wait_ticks(300)
        placed = client.post("/api/v1/control/orders", headers=trader_auth, json=order)
        assert placed.status_code == 200, placed.text
        cid = placed.json()["worker"]["client_order_id"]
        assert placed.json()["worker"]["order_state"] == "ack"
        produce_ticks(kafka_bootstrap, stream_env["TRADELOOP_TOPIC_PREFIX"], ticks[300:])
        fill = wait_until(lambda: _fill(engine, account, cid), 30, "the manual order's fill", w.log)
        assert fill == ("manual", "BTC/USDT", "buy", Decimal("0.01"))
        with engine.connect() as conn:
            who = conn.execute(sa.text("SELECT identity, details->>'outcome' FROM audit_log WHERE scope = :s AND"
                                       " action = 'manual_order' AND details->>'client_order_id' = :c"),
                               {"s": f"account:{account}", "c": cid}).one()
        assert tuple(who) == (trader, "applied")


def _fill(engine, account: str, client_order_id: str) -> tuple | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT strategy, symbol, side, quantity FROM trades WHERE account = :a AND"
                                   " client_order_id = :c"), {"a": account, "c": client_order_id}).first()
    return None if row is None else tuple(row)
