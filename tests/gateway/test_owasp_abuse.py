"""OWASP API Security Top 10 (2023): API4 Unrestricted Resource Consumption and API6 Unrestricted Access to
Sensitive Business Flows, against the real gateway and PostgreSQL.

Already covered elsewhere (not repeated): requests per identity and token requests per address give 429 with
Retry-After (test_auth.py), a body over the limit is 413 with or without Content-Length (test_app.py), limit=501 on
/orders is 422 (test_read.py). Added here: failed authentications per address, every paged route's ``limit`` and
``offset`` capped (found from the OpenAPI document), long secrets refused before any hashing, the number of open
streams per identity, and control actions (the sensitive flows: halting, flattening, manual orders) counted against
the identity's rate.

API6, the rest: the business flows an attacker would automate here are orders. A manual order passes the worker's
OMS and risk engine (position, notional and loss limits, the kill switch) like any strategy order, and needs the
``trade`` scope; mass account creation does not exist (users are made by admins only).
"""

from __future__ import annotations

import time

import pytest

from tests.gateway.conftest import bearer, gateway_settings, login, make_client, new_user

pytestmark = pytest.mark.timeout(90)


def test_api4_failed_authentications_are_limited_per_address(pg_url, engine, worker, tmp_path):
    """API4: guessing tokens costs the address, like guessing passwords; the 429 says when to come back."""
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_login_rate_per_min=3)
    with make_client(settings, engine) as client:
        codes = [client.get("/api/v1/orders", headers=bearer(f"guess-{i}")).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]
        limited = client.get("/api/v1/orders")  # no token at all counts too
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        assert "failed authentications per address" in limited.json()["error"]


def test_api4_every_page_size_and_offset_is_capped(client, tokens):
    """API4: every GET route with a ``limit`` declares a maximum, and a request above it (or absurdly above) is
    a 422, as is an offset past its cap."""
    spec = client.get("/api/v1/openapi.json").json()
    paged = {}
    for path, ops in spec["paths"].items():
        for p in ops.get("get", {}).get("parameters", []):
            if p["name"] == "limit":
                paged[path] = p["schema"]["maximum"]
    assert len(paged) >= 6 and max(paged.values()) <= 500, paged
    auth = bearer(tokens["viewer"])
    for path, maximum in paged.items():
        for value in (maximum + 1, 10 ** 12, -1, 0):
            resp = client.get(path, params={"limit": value}, headers=auth)
            assert resp.status_code == 422 and "query.limit" in resp.json()["error"], (path, value)
    assert client.get("/api/v1/orders", params={"offset": 10 ** 7}, headers=auth).status_code == 422
    assert client.get("/api/v1/orders", params={"limit": 500}, headers=auth).status_code == 200


def test_api4_oversized_secrets_are_refused_before_any_hashing(client, tokens):
    """API4: argon2 on a megabyte password would be a cheap way to burn CPU: length caps come first."""
    for data in ({"grant_type": "password", "username": "someone", "password": "p" * 1025},
                 {"grant_type": "password", "username": "u" * 65, "password": "p" * 20},
                 {"grant_type": "client_credentials", "client_id": "tlk_x", "client_secret": "s" * 257},
                 {"grant_type": "refresh_token", "refresh_token": "r" * 257}):
        t = time.perf_counter()
        resp = client.post("/api/v1/auth/token", data=data)
        assert resp.status_code == 422 and time.perf_counter() - t < 0.5, (resp.status_code, data.keys())
    resp = client.post("/api/v1/auth/password", headers=bearer(tokens["viewer"]),
                       json={"current_password": "c" * 1025, "new_password": "n" * 2000})
    assert resp.status_code == 422


@pytest.mark.parametrize("depth", [17, 300, 900, 5000])
def test_api4_deeply_nested_json_is_refused_not_a_500(client, tokens, worker, depth):
    """API4: free-form ``params`` nested hundreds deep used to exhaust the serialiser's stack (a 500); nesting is
    capped (422), and what the JSON parser itself refuses is a 400."""
    from orchestration.gateway.routes.control import MAX_DEPTH

    auth = {**bearer(tokens["risk_officer"]), "Content-Type": "application/json"}
    n = len(worker.requests)
    for inner in ("[" * depth + "]" * depth, '{"a": ' * depth + "1" + "}" * depth):
        resp = client.post("/api/v1/control/limits", headers=auth, content='{"params": {"a": ' + inner + "}}")
        assert resp.status_code in (400, 422), (depth, resp.status_code)
        if resp.status_code == 422:
            assert f"nested at most {MAX_DEPTH} levels" in resp.json()["error"]
    assert len(worker.requests) == n
    ok = '{"params": {"a": ' + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "}}"
    assert client.post("/api/v1/control/limits", headers=auth, content=ok).status_code == 200


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_api4_non_finite_numbers_in_control_params_are_refused(client, tokens, worker, number):
    """API4/API8: Python's JSON parser takes NaN and Infinity (and 1e400 becomes Infinity); sent on they became
    null -- a limit silently cleared. They are refused instead."""
    n = len(worker.requests)
    resp = client.post("/api/v1/control/limits", content='{"params": {"max_position": ' + number + "}}",
                       headers={**bearer(tokens["risk_officer"]), "Content-Type": "application/json"})
    assert resp.status_code == 422 and "numbers must be finite" in resp.json()["error"], resp.text
    assert len(worker.requests) == n


def test_api4_open_streams_per_identity_are_capped(client, engine):
    """API4: each open stream polls PostgreSQL twice a second; one identity gets at most a handful at once, and a
    closed one frees its place."""
    from starlette.websockets import WebSocketDisconnect

    from orchestration.gateway.routes.ws import MAX_STREAMS_PER_IDENTITY

    token = login(client, new_user(engine, "viewer")).json()["access_token"]
    other = login(client, new_user(engine, "viewer")).json()["access_token"]
    opened = []
    try:
        for _ in range(MAX_STREAMS_PER_IDENTITY):
            ws = client.websocket_connect("/api/v1/stream").__enter__()
            opened.append(ws)
            ws.send_json({"access_token": token})
            assert ws.receive_json()["type"] == "hello"
        with client.websocket_connect("/api/v1/stream") as extra:
            extra.send_json({"access_token": token})
            refused = extra.receive_json()
            assert refused == {"type": "error", "error": "too many open streams for this identity "
                                                         f"(at most {MAX_STREAMS_PER_IDENTITY})"}
            with pytest.raises(WebSocketDisconnect) as closed:
                extra.receive_json()
            assert closed.value.code == 1013
        with client.websocket_connect("/api/v1/stream") as theirs:  # another identity is not affected
            theirs.send_json({"access_token": other})
            assert theirs.receive_json()["type"] == "hello"
        opened.pop().__exit__(None, None, None)
        deadline = time.monotonic() + 10
        while True:  # the server notices the close at its next poll
            with client.websocket_connect("/api/v1/stream") as again:
                again.send_json({"access_token": token})
                if again.receive_json()["type"] == "hello":
                    break
            assert time.monotonic() < deadline, "a closed stream did not free its place"
            time.sleep(0.2)
    finally:
        for ws in opened:
            ws.__exit__(None, None, None)


@pytest.mark.parametrize("hello", [{"access_token": "x", "topics": [["fills"]]}, {"access_token": "x", "topics": 5},
                                   ["access_token"], "token", {"access_token": ["a"]}])
def test_api4_a_malformed_first_stream_message_is_a_clean_refusal(client, tokens, hello):
    """API4/API8: a first message of the wrong shape closes the socket with a one-line reason, never a crash."""
    from starlette.websockets import WebSocketDisconnect

    if isinstance(hello, dict) and hello.get("access_token") == "x":
        hello = {**hello, "access_token": tokens["viewer"]}
    with client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json(hello)
        first = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert first["type"] == "error" and closed.value.code == 1008, first
    assert "Traceback" not in first["error"] and tokens["viewer"] not in first["error"]


def test_api6_control_actions_count_against_the_identitys_rate(pg_url, engine, worker, tmp_path):
    """API6: a script hammering the kill switch or manual orders is stopped by the per-identity limit; the worker
    receives only the allowed ones."""
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_rate_per_min=3)
    with make_client(settings, engine) as client:
        auth = bearer(login(client, new_user(engine, "admin")).json()["access_token"])
        n = len(worker.requests)
        codes = [client.post("/api/v1/control/orders", headers=auth,
                             json={"symbol": "BTC/USDT", "side": "buy", "quantity": "0.01"}).status_code
                 for _ in range(3)]
        limited = client.post("/api/v1/control/kill-switch", headers=auth, json={"reason": "x"})
        assert codes + [limited.status_code] == [200, 200, 200, 429]
        assert 1 <= int(limited.headers["retry-after"]) <= 60 and "per identity" in limited.json()["error"]
        assert len(worker.requests) == n + 3
