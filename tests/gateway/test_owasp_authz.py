"""OWASP API Security Top 10 (2023): API1 Broken Object Level Authorization and API5 Broken Function Level
Authorization, against the real gateway and PostgreSQL.

Already covered elsewhere (not repeated here): test_object_level.py (a limited user's lists of orders, positions,
accounts, audit; ?account=<other> on six read routes; kill-switch/resume for another account; API keys and the
stream inherit the owner's accounts) and test_route_matrix.py (every route x every role and no token). Added here:
fills and risk rows really present for both accounts, every read route that takes ``account`` found from the
OpenAPI document (a new one is covered without editing this file), every control body with another account, the
audit filter, revoking someone else's access token; for API5 a narrowed admin token and an admin's API key, HTTP
method tampering, HEAD, method-override headers and path variants.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from tests.gateway.conftest import bearer, login, new_user
from tests.gateway.test_route_matrix import app_routes

T0 = datetime(2026, 12, 3, tzinfo=timezone.utc)
CONTROL_BODIES = {  # a valid body for each control route (the account is added per test)
    "/api/v1/control/kill-switch": {"reason": "owasp"},
    "/api/v1/control/resume": {"reason": "owasp"},
    "/api/v1/control/flatten": {"reason": "owasp"},
    "/api/v1/control/limits": {"params": {"max_position": 1}},
    "/api/v1/control/swap-strategy": {"slot": "s1", "strategy": "sma_cross", "params": {}},
    "/api/v1/control/orders": {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.01"},
    "/api/v1/control/orders/{client_order_id}/cancel": {"reason": "owasp"},
}


@pytest.fixture(scope="module")
def accounts(engine) -> tuple[str, str]:
    """Two accounts, each with an order, a fill, a position, risk metrics, a release and an audit row."""
    from storage import releases as rel

    mine, theirs = f"own-{uuid.uuid4().hex[:6]}", f"oth-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        for acct in (mine, theirs):
            conn.execute(sa.text("""
                INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type, quantity,
                                    time_in_force, status, created_at, updated_at)
                VALUES (:c, :a, 's', 'sim', 'BTC/USDT', 'buy', 'market', 1, 'gtc', 'new', :t, :t)"""),
                {"c": f"{acct}-o", "a": acct, "t": T0})
            conn.execute(sa.text("""
                INSERT INTO trades (fill_id, client_order_id, account, strategy, exchange, symbol, side, price,
                                    quantity, fee, fee_currency, liquidity, ts)
                VALUES (:f, :c, :a, 's', 'sim', 'BTC/USDT', 'buy', 100, 1, 0, 'USDT', 'taker', :t)"""),
                {"f": f"{acct}-f", "c": f"{acct}-o", "a": acct, "t": T0})
            conn.execute(sa.text("INSERT INTO positions (account, strategy, symbol, quantity, updated_at)"
                                 " VALUES (:a, 's', 'BTC/USDT', 1, :t)"), {"a": acct, "t": T0})
            conn.execute(sa.text("INSERT INTO risk_metrics (ts, account, scope, metric, value)"
                                 " VALUES (:t, :a, 'account', 'equity', 1000)"), {"a": acct, "t": T0})
            conn.execute(sa.text("INSERT INTO audit_log (event_id, actor, action, scope) VALUES (:e, 'x', 'y', :s)"),
                         {"e": f"{acct}-e", "s": f"account:{acct}"})
            rel.create_release(conn, acct, "sma_cross", {"fast": 5, "slow": 20}, {}, source="owasp")
    return mine, theirs


def _limited(client, engine, role: str, account: str) -> dict:
    return bearer(login(client, new_user(engine, role, accounts=[account])).json()["access_token"])


def _spec(client) -> dict:
    return client.get("/api/v1/openapi.json").json()


def test_api1_a_limited_reader_never_receives_another_accounts_rows(client, engine, accounts):
    """API1: every list holds the caller's own account's rows (present) and none of the other's, filters or not."""
    mine, theirs = accounts
    auth = _limited(client, engine, "viewer", mine)
    for path, key, own in (("/api/v1/fills", "fill_id", f"{mine}-f"), ("/api/v1/orders", "client_order_id", f"{mine}-o")):
        items = client.get(path, headers=auth).json()["items"]
        assert [i[key] for i in items] == [own], path
    # filters that would match the other account's rows select nothing instead of leaking them
    for path, params in (("/api/v1/fills", {"symbol": "BTC/USDT"}), ("/api/v1/orders", {"status": "new"}),
                         ("/api/v1/positions", {"symbol": "BTC/USDT"}), ("/api/v1/audit", {"scope": f"account:{theirs}"}),
                         ("/api/v1/audit", {"actor": "x"})):
        items = client.get(path, params=params, headers=auth).json()["items"]
        assert all(theirs not in str(i) for i in items), (path, params)
    risk = client.get("/api/v1/risk", params={"account": mine}, headers=auth).json()
    assert risk["account"] == mine and [m["value"] for m in risk["metrics"]] == ["1000"]
    releases = client.get("/api/v1/strategies/releases", params={"account": mine}, headers=auth).json()["items"]
    assert {r["account"] for r in releases} == {mine}


def test_api1_every_read_route_taking_an_account_refuses_another(client, engine, accounts):
    """API1: found from the OpenAPI document, so a new route with an ``account`` parameter is checked too."""
    mine, theirs = accounts
    auth = _limited(client, engine, "viewer", mine)
    with_account = [path for path, ops in _spec(client)["paths"].items() if "get" in ops
                    and any(p["name"] == "account" for p in ops["get"].get("parameters", []))]
    assert len(with_account) >= 6, with_account
    for path in with_account:
        resp = client.get(path, params={"account": theirs}, headers=auth)
        assert resp.status_code == 403 and theirs in resp.json()["error"], (path, resp.status_code)
        assert theirs not in str(resp.json().get("items", ""))
        assert client.get(path, params={"account": mine}, headers=auth).status_code == 200, path


@pytest.mark.parametrize("path", sorted(CONTROL_BODIES))
def test_api1_every_control_body_for_another_account_is_refused(client, engine, worker, accounts, path):
    """API1: a limited trader or risk officer cannot act on another account through any control route, nor through
    the default account it was not given; nothing reaches the worker."""
    mine, theirs = accounts
    role = "trader" if path.startswith(("/api/v1/control/swap", "/api/v1/control/orders")) else "risk_officer"
    auth = _limited(client, engine, role, mine)
    concrete = path.replace("{client_order_id}", f"{theirs}-o")
    n = len(worker.requests)
    for body in ({**CONTROL_BODIES[path], "account": theirs}, CONTROL_BODIES[path]):  # explicit, and the default
        resp = client.post(concrete, headers=auth, json=body)
        assert resp.status_code == 403 and "no access to account" in resp.json()["error"], (body, resp.text)
    assert len(worker.requests) == n
    ok = client.post(concrete, headers=auth, json={**CONTROL_BODIES[path], "account": mine})
    assert ok.status_code == 200 and worker.requests[-1]["path"].startswith("/control/")


def test_api1_revoking_someone_elses_access_token_does_nothing(client, engine):
    """API1: /auth/revoke acts on the caller's own tokens only (refresh tokens: test_auth.py; access tokens here)."""
    mine = bearer(login(client, new_user(engine, "viewer")).json()["access_token"])
    theirs = login(client, new_user(engine, "viewer")).json()["access_token"]
    resp = client.post("/api/v1/auth/revoke", data={"token": theirs}, headers=mine)
    assert resp.status_code == 200 and resp.json()["revoked"] is False
    assert client.get("/api/v1/auth/me", headers=bearer(theirs)).status_code == 200


def test_api5_admin_functions_need_the_admin_scope_in_the_token_not_the_role(client, engine):
    """API5: an admin's token narrowed to ``read`` and an admin's API key without ``admin`` are refused every admin
    route (the role matrix covers the roles themselves)."""
    from orchestration.gateway import users

    admin = new_user(engine, "admin")
    narrow = bearer(login(client, admin, scope="read").json()["access_token"])
    key, secret = users.create_api_key(engine, admin, "reader", ["read", "trade", "risk"])
    keyed = bearer(client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                           "client_secret": secret}).json()["access_token"])
    admin_routes = [(m, p) for m, p, _ in app_routes(client.app) if p.startswith("/api/v1/admin/")]
    assert len(admin_routes) == 6
    for auth in (narrow, keyed):
        for method, path in admin_routes:
            concrete = path.replace("{username}", admin).replace("{key_id}", key.key_id)
            resp = client.request(method, concrete, headers=auth,
                                  json={"username": "x-" + uuid.uuid4().hex[:6], "password": "p" * 16, "role": "admin"}
                                  if method == "POST" else None)
            assert resp.status_code == 403 and "needs scope admin" in resp.json()["error"], (method, path, resp.text)
    # nothing happened: the key is live, the admin enabled
    assert not any(k.revoked_at for k in users.list_api_keys(engine, admin))


def test_api5_http_method_tampering_reaches_nothing(client, tokens):
    """API5: every path answers 405 to methods it does not declare -- as admin too --, HEAD on a protected GET needs
    a token (or is not served), and method-override headers are ignored."""
    auth = bearer(tokens["admin"])
    declared: dict[str, set[str]] = {}
    for method, path, _ in app_routes(client.app):
        declared.setdefault(path, set()).add(method)
    for path, methods in declared.items():
        concrete = path.replace("{username}", "nobody").replace("{key_id}", "tlk_x").replace(
            "{client_order_id}", "c1").replace("{name}", "favicon.png")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT"):
            if method in methods:
                continue
            resp = client.request(method, concrete, headers=auth)
            assert resp.status_code == 405, (method, path, resp.status_code)
            assert set(resp.headers["allow"].replace(" ", "").split(",")) <= methods | {"HEAD"}
    for method, path, _ in app_routes(client.app):
        if method == "GET" and path.startswith("/api/v1/") and path not in ("/api/v1/health", "/api/v1/openapi.json"):
            assert client.head(path).status_code in (401, 405), path  # FastAPI routes declare no HEAD
    override = {"X-HTTP-Method-Override": "POST", "X-HTTP-Method": "POST", "X-Method-Override": "POST"}
    resp = client.get("/api/v1/admin/users/nobody/disable", headers={**auth, **override})
    assert resp.status_code == 405
    resp = client.get("/api/v1/control/kill-switch", headers={**bearer(tokens["viewer"]), **override})
    assert resp.status_code == 405


@pytest.mark.parametrize("path", ["/api/v1/admin/users/", "/API/V1/ADMIN/USERS", "//api/v1/admin/users",
                                  "/api/v1//admin/users", "/api/v1/admin/users%2F", "/api/v1/./admin/users",
                                  "/api/v1/read/../admin/users", "/api/v1/admin/users;x=1", "/api/v1/admin/users%00",
                                  "/api/v1/admin/%75sers"])
def test_api5_path_variants_of_an_admin_route_are_no_way_around(client, tokens, path):
    """API5: spelling an admin path differently never answers its data without the admin scope."""
    for headers in ({}, bearer(tokens["viewer"])):
        resp = client.get(path, headers=headers, follow_redirects=False)
        assert resp.status_code in (401, 403, 404), (path, resp.status_code)
        assert "items" not in resp.text and "location" not in resp.headers
