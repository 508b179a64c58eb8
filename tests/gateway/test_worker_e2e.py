"""The gateway's control path against a real worker (Faust subprocess on the session's broker and PostgreSQL):
a risk officer's kill switch through /api/v1 halts the worker, and the audit row names the authenticated user."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from deploy.secrets import PASSPHRASE_ENV

from tests.gateway.conftest import bearer, gateway_settings, make_client, new_user, login
from tests.streaming.conftest import TOKEN, stream_env, worker_factory  # noqa: F401 -- fixtures used below


@pytest.mark.slow
def test_kill_switch_and_resume_through_the_gateway_reach_the_real_worker(worker_factory, stream_env, engine,  # noqa: F811
                                                                          pg_url, monkeypatch):
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
        # an action the worker does not know yet is the worker's refusal, passed on in one line
        order = client.post("/api/v1/control/orders", headers=bearer(login(client, new_user(engine, "trader"))
                                                                     .json()["access_token"]),
                            json={"symbol": "BTC/USDT", "side": "buy", "quantity": "0.01"})
        assert order.status_code == 409 and order.json()["error"].startswith("the worker refused manual_order")
