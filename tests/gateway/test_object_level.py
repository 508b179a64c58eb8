"""Object-level authorisation across accounts (OWASP API1): a user limited to some trading accounts reads and
acts on those only, whatever filter, default or body it sends; its API keys inherit the limit."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from starlette.websockets import WebSocketDisconnect

from tests.gateway.conftest import bearer, login, new_user

T0 = datetime(2026, 12, 2, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def two_accounts(engine) -> tuple[str, str]:
    a, b = f"mine-{uuid.uuid4().hex[:6]}", f"theirs-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        for acct in (a, b):
            conn.execute(sa.text("""
                INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type, quantity,
                                    time_in_force, status, created_at, updated_at)
                VALUES (:c, :a, 's', 'sim', 'BTC/USDT', 'buy', 'market', 1, 'gtc', 'new', :t, :t)"""),
                {"c": f"{acct}-o", "a": acct, "t": T0})
            conn.execute(sa.text("INSERT INTO positions (account, strategy, symbol, quantity, updated_at)"
                                 " VALUES (:a, 's', 'BTC/USDT', 1, :t)"), {"a": acct, "t": T0})
            conn.execute(sa.text("INSERT INTO audit_log (event_id, actor, action, scope) VALUES (:e, 'x', 'y', :s)"),
                         {"e": f"{acct}-e", "s": f"account:{acct}"})
    return a, b


def test_a_limited_user_sees_only_its_accounts(client, engine, two_accounts):
    mine, theirs = two_accounts
    name = new_user(engine, "viewer", accounts=[mine])
    got = login(client, name).json()
    auth = bearer(got["access_token"])
    assert client.get("/api/v1/auth/me", headers=auth).json()["accounts"] == [mine]
    for path in ("/api/v1/orders", "/api/v1/positions", "/api/v1/fills"):
        items = client.get(path, headers=auth).json()["items"]
        assert {i["account"] for i in items} <= {mine}, path
    assert [o["client_order_id"] for o in client.get("/api/v1/orders", headers=auth).json()["items"]] == [f"{mine}-o"]
    assert [a["account"] for a in client.get("/api/v1/accounts", headers=auth).json()["items"]] == [mine]
    assert {a["scope"] for a in client.get("/api/v1/audit", headers=auth).json()["items"]} == {f"account:{mine}"}
    for path in ("/api/v1/orders", "/api/v1/positions", "/api/v1/fills", "/api/v1/risk", "/api/v1/strategies/releases",
                 "/api/v1/strategies/running"):
        resp = client.get(path, params={"account": theirs}, headers=auth)
        assert resp.status_code == 403 and resp.json()["error"] == f"forbidden: no access to account {theirs!r}", path
    # the configured account (the default of /risk) is not among its accounts either
    assert client.get("/api/v1/risk", headers=auth).status_code == 403
    # the limit survives a refresh
    again = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": got["refresh_token"]})
    assert client.get("/api/v1/orders", params={"account": theirs},
                      headers=bearer(again.json()["access_token"])).status_code == 403
    # an unlimited viewer reads either
    anyone = bearer(login(client, new_user(engine, "viewer")).json()["access_token"])
    for acct in (mine, theirs):
        items = client.get("/api/v1/orders", params={"account": acct}, headers=anyone).json()["items"]
        assert [o["client_order_id"] for o in items] == [f"{acct}-o"]


def test_a_limited_user_acts_only_on_its_accounts(client, engine, worker, two_accounts):
    mine, theirs = two_accounts
    officer = new_user(engine, "risk_officer", accounts=[mine])
    auth = bearer(login(client, officer).json()["access_token"])
    n = len(worker.requests)
    refused = client.post("/api/v1/control/kill-switch", headers=auth, json={"account": theirs, "reason": "x"})
    assert refused.status_code == 403 and theirs in refused.json()["error"]
    assert client.post("/api/v1/control/resume", headers=auth, json={}).status_code == 403  # default: paper
    assert len(worker.requests) == n  # nothing reached the worker
    ok = client.post("/api/v1/control/kill-switch", headers=auth, json={"account": mine, "reason": "mine"})
    assert ok.status_code == 200 and worker.requests[-1]["path"] == "/control/kill_switch"


def test_api_keys_inherit_the_owner_accounts(client, engine, two_accounts):
    from orchestration.gateway import users

    mine, theirs = two_accounts
    owner = new_user(engine, "viewer", accounts=[mine])
    key, secret = users.create_api_key(engine, owner, "reporter", ["read"])
    token = client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                    "client_secret": secret}).json()["access_token"]
    assert client.get("/api/v1/orders", params={"account": theirs}, headers=bearer(token)).status_code == 403
    with client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"access_token": token, "account": theirs})
        assert ws.receive_json()["error"] == f"forbidden: no access to account {theirs!r}"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


def test_bad_account_names_are_refused_when_a_user_is_made(engine):
    from orchestration.gateway import users

    with pytest.raises(users.UserError, match="not plain names"):
        users.add_user(engine, f"u-{uuid.uuid4().hex[:8]}", "a long enough password", "viewer",
                       accounts=["ok", "bad name; --"])
