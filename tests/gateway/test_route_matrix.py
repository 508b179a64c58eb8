"""Every route of the app, with no token and as every role: 401 without a token, 403 without the scope, success
with it. The expected scope of each route is written here (the role table of PLAN.md); a route added to the app
without a line here fails the test, and so does a route whose declared scopes differ from this table."""

from __future__ import annotations

import uuid

import pytest
from fastapi.routing import APIRoute

from tests.gateway.conftest import ROLE_NAMES, bearer, new_user

# (method, path) -> required scope ("" = any authenticated identity, None = public)
EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/api/v1/health"): None,
    ("GET", "/api/v1/openapi.json"): None,
    ("GET", "/api/docs"): None,
    ("GET", "/api/docs/redoc"): None,
    ("GET", "/api/docs/assets/{name}"): None,
    ("POST", "/api/v1/auth/token"): None,
    ("POST", "/api/v1/auth/revoke"): "",
    ("GET", "/api/v1/auth/me"): "",
    ("POST", "/api/v1/auth/password"): "",
    ("GET", "/api/v1/accounts"): "read",
    ("GET", "/api/v1/positions"): "read",
    ("GET", "/api/v1/orders"): "read",
    ("GET", "/api/v1/fills"): "read",
    ("GET", "/api/v1/risk"): "read",
    ("GET", "/api/v1/strategies/releases"): "read",
    ("GET", "/api/v1/strategies/running"): "read",
    ("GET", "/api/v1/models"): "read",
    ("GET", "/api/v1/models/aliases"): "read",
    ("GET", "/api/v1/audit"): "read",
    ("GET", "/api/v1/pipeline/runs"): "read",
    ("POST", "/api/v1/control/kill-switch"): "risk",
    ("POST", "/api/v1/control/resume"): "risk",
    ("POST", "/api/v1/control/flatten"): "risk",
    ("POST", "/api/v1/control/limits"): "risk",
    ("POST", "/api/v1/control/swap-strategy"): "trade",
    ("POST", "/api/v1/control/orders"): "trade",
    ("POST", "/api/v1/control/orders/{client_order_id}/cancel"): "trade",
    ("GET", "/api/v1/admin/users"): "admin",
    ("POST", "/api/v1/admin/users"): "admin",
    ("POST", "/api/v1/admin/users/{username}/disable"): "admin",
    ("GET", "/api/v1/admin/api-keys"): "admin",
    ("POST", "/api/v1/admin/api-keys"): "admin",
    ("POST", "/api/v1/admin/api-keys/{key_id}/revoke"): "admin",
}
ROLE_SCOPES = {"viewer": {"read"}, "trader": {"read", "trade"}, "risk_officer": {"read", "risk"},
               "admin": {"read", "trade", "risk", "admin"}}
# what an allowed caller gets where it is not plain success: MLflow and Dagster are not running here (503); the
# password change is sent with a wrong current password so the role's token keeps working (400 = authorised)
ALLOWED_STATUS = {("GET", "/api/v1/models/aliases"): {503}, ("GET", "/api/v1/pipeline/runs"): {503}, ("POST", "/api/v1/auth/password"): {400}}


def app_routes(app) -> list[tuple[str, str, object]]:
    """(method, full path, route) of every route, included routers walked (FastAPI keeps them nested)."""
    from fastapi.routing import iter_route_contexts

    out = []
    for ctx in iter_route_contexts(app.routes):
        for method in sorted(ctx.methods or ()):
            if method in ("HEAD", "OPTIONS"):
                continue
            out.append((method, ctx.path, ctx.original_route))
    return out


def declared_scopes(route) -> set[str] | None:
    """The scopes of the route's require() dependency; None when it has none."""
    if not isinstance(route, APIRoute):
        return None
    for dep in route.dependant.dependencies:
        scopes = getattr(dep.call, "required_scopes", None)
        if scopes is not None:
            return set(scopes)
    return None


def test_every_route_is_in_the_role_table_and_declares_its_scope(client):
    routes = app_routes(client.app)
    assert {(m, p) for m, p, _ in routes} == set(EXPECTED), "a route is missing from (or extra in) EXPECTED"
    for method, path, route in routes:
        want = EXPECTED[(method, path)]
        got = declared_scopes(route)
        if want is None:
            assert got is None, f"{method} {path} is public but requires {got}"
        else:
            assert got == ({want} if want else set()), f"{method} {path}: declares {got}, the table says {want!r}"


def _request(client, engine, people, method: str, path: str, headers: dict):
    """A well-formed request for the route (so an allowed caller succeeds)."""
    from orchestration.gateway import users

    tag = uuid.uuid4().hex[:8]
    concrete = path
    json_body = data = None
    if "{username}" in path:
        concrete = path.replace("{username}", new_user(engine, "viewer"))
    if "{key_id}" in path:
        key, _ = users.create_api_key(engine, people["viewer"], f"m-{tag}", ["read"])
        concrete = path.replace("{key_id}", key.key_id)
    if "{client_order_id}" in path:
        concrete = path.replace("{client_order_id}", f"coid-{tag}")
    bodies = {
        "/api/v1/auth/token": None,
        "/api/v1/auth/revoke": "form",
        "/api/v1/auth/password": {"current_password": "definitely not it", "new_password": "x" * 16},
        "/api/v1/control/kill-switch": {"reason": "matrix"},
        "/api/v1/control/resume": {"reason": "matrix"},
        "/api/v1/control/flatten": {"reason": "matrix"},
        "/api/v1/control/limits": {"params": {"max_position": 1}, "reason": "matrix"},
        "/api/v1/control/swap-strategy": {"slot": "s1", "strategy": "sma_cross", "params": {}},
        "/api/v1/control/orders": {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.01"},
        "/api/v1/control/orders/{client_order_id}/cancel": {"reason": "matrix"},
        "/api/v1/admin/users": {"username": f"made-{tag}", "password": "p" * 16, "role": "viewer"},
        "/api/v1/admin/api-keys": {"owner": people["viewer"], "name": f"k-{tag}", "scopes": ["read"]},
    }
    body = bodies.get(path)
    if body == "form":
        data = {"token": "not-a-real-token"}
    elif body is not None:
        json_body = body
    return client.request(method, concrete, headers=headers, json=json_body, data=data)


CALLERS = (None, *ROLE_NAMES)


@pytest.mark.parametrize("caller", CALLERS, ids=[c or "no-token" for c in CALLERS])
def test_every_route_answers_as_the_role_table_says(client, engine, people, tokens, caller):
    failures = []
    for method, path, _ in app_routes(client.app):
        need = EXPECTED[(method, path)]
        if need is None:
            continue  # public routes: the health/docs tests cover them
        headers = bearer(tokens[caller]) if caller else {}
        resp = _request(client, engine, people, method, path, headers)
        if caller is None:
            want = {401}
        elif need and need not in ROLE_SCOPES[caller]:
            want = {403}
        else:
            want = ALLOWED_STATUS.get((method, path), {200, 201})
        if resp.status_code not in want:
            failures.append(f"{caller or 'no token'} {method} {path}: {resp.status_code} {resp.text[:200]}")
    assert not failures, "\n".join(failures)


def test_public_routes_answer_without_a_token(client):
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/control/kill-switch" in spec.json()["paths"]
    assert spec.json()["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] \
        == "/api/v1/auth/token"
    assert client.get("/api/docs").status_code == 200


def test_control_reaches_the_worker_with_the_identity(client, tokens, people, worker):
    before = len(worker.requests)
    resp = client.post("/api/v1/control/kill-switch", headers=bearer(tokens["risk_officer"]),
                       json={"reason": "drill", "flatten": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["worker"]["state"] == "halted"
    sent = worker.requests[before]
    assert sent["path"] == "/control/kill_switch" and sent["auth"].startswith("Bearer ")
    body = sent["body"]
    if "sig" in body:  # signed control (streaming/signing.py): who and where are the envelope's
        assert body["identity"] == people["risk_officer"] and body["source"] == "testclient"
        body = body["body"]
    else:
        assert body["who"] == people["risk_officer"] and body["source"] == "testclient"
    assert body["action"] == "kill_switch" and body["flatten"] is True
    assert body["account"] == "paper" and body["reason"] == "drill"
    # a field the body does not declare is refused (no mass assignment), and nothing reaches the worker
    n = len(worker.requests)
    extra = client.post("/api/v1/control/kill-switch", headers=bearer(tokens["risk_officer"]),
                        json={"reason": "x", "who": "someone-else"})
    assert extra.status_code == 422 and "who" in extra.json()["error"] and len(worker.requests) == n
    bad_order = client.post("/api/v1/control/orders", headers=bearer(tokens["trader"]),
                            json={"symbol": "BTC/USDT", "side": "buy", "quantity": "1", "order_type": "limit"})
    assert bad_order.status_code == 422 and "limit order needs a price" in bad_order.json()["error"]


def test_control_without_a_worker_is_a_clear_503(pg_url, engine, gw_home, tokens):
    from deploy.stack.process import free_port
    from tests.gateway.conftest import gateway_settings, make_client

    # the same home (the same JWT key in its key file), a worker port nothing listens on
    with make_client(gateway_settings(gw_home, pg_url, free_port()), engine) as client:
        resp = client.post("/api/v1/control/resume", headers=bearer(tokens["risk_officer"]), json={})
    assert resp.status_code == 503 and resp.json()["error"].startswith("the worker is unreachable")


@pytest.mark.timeout(60)
def test_the_websocket_route_answers_as_the_role_table_says(client, tokens):
    """WebSocket routes have no methods: walked here. Every role holds read; no token is refused."""
    from fastapi.routing import iter_route_contexts
    from starlette.websockets import WebSocketDisconnect

    paths = {ctx.path for ctx in iter_route_contexts(client.app.routes) if not ctx.methods}
    assert paths == {"/api/v1/stream"}
    for caller in CALLERS:
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json({"access_token": tokens[caller] if caller else ""})
            first = ws.receive_json()
            if caller is None:
                assert first["type"] == "error"
                with pytest.raises(WebSocketDisconnect):
                    ws.receive_json()
            else:
                assert first["type"] == "hello", (caller, first)
