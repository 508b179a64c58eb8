"""The app's guard rails: body size limit, closed CORS, security headers, error bodies without internals."""

from __future__ import annotations

from tests.gateway.conftest import bearer, gateway_settings, make_client

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
                    "cache-control": "no-store"}


def _has_security_headers(resp) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (name, resp.headers)
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_a_body_over_the_limit_is_413(pg_url, engine, worker, gw_home, tokens):
    settings = gateway_settings(gw_home, pg_url, worker.port, gateway_max_body_bytes=2048)
    with make_client(settings, engine) as client:
        auth = bearer(tokens["risk_officer"])
        n = len(worker.requests)
        big = client.post("/api/v1/control/limits", headers=auth, json={"params": {"x": "a" * 5000}})
        assert big.status_code == 413 and big.json() == {"error": "request body larger than 2048 bytes"}
        _has_security_headers(big)

        def chunks():  # no Content-Length: the limit counts what arrives
            for _ in range(10):
                yield b"a" * 1000

        chunked = client.post("/api/v1/control/limits", headers={**auth, "Content-Type": "application/json"},
                              content=chunks())
        assert chunked.status_code == 413
        token_form = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "u",
                                                             "password": "p" * 4000})
        assert token_form.status_code == 413
        assert len(worker.requests) == n  # nothing reached the worker
        small = client.post("/api/v1/control/limits", headers=auth, json={"params": {"max_position": 1}})
        assert small.status_code == 200


def test_cors_is_closed_by_default(client, tokens):
    pre = client.options("/api/v1/orders", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "GET",
                                                    "Access-Control-Request-Headers": "Authorization"})
    assert "access-control-allow-origin" not in pre.headers
    got = client.get("/api/v1/orders", headers={"Origin": "https://evil.example", **bearer(tokens["viewer"])})
    assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


def test_cors_opens_only_to_configured_origins(pg_url, engine, worker, gw_home):
    settings = gateway_settings(gw_home, pg_url, worker.port, gateway_cors_origins=["https://console.example"])
    with make_client(settings, engine) as client:
        ok = client.options("/api/v1/orders", headers={"Origin": "https://console.example",
                                                       "Access-Control-Request-Method": "GET"})
        assert ok.headers.get("access-control-allow-origin") == "https://console.example"
        other = client.options("/api/v1/orders", headers={"Origin": "https://evil.example",
                                                          "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in other.headers


def test_security_headers_on_every_kind_of_answer(client, tokens):
    for resp in (client.get("/api/v1/health"), client.get("/api/v1/orders"),
                 client.get("/api/v1/orders", headers=bearer(tokens["viewer"])),
                 client.get("/api/v1/orders", params={"limit": 0}, headers=bearer(tokens["viewer"])),
                 client.get("/api/v1/nowhere"), client.post("/api/v1/auth/token", data={"grant_type": "magic"})):
        _has_security_headers(resp)
    docs = client.get("/api/docs")
    assert "script-src 'self'" in docs.headers["content-security-policy"]  # only the docs pages load scripts
    assert "script-src" not in client.get("/api/v1/health").headers["content-security-policy"]
    assert "strict-transport-security" not in docs.headers  # no TLS here


def test_errors_never_show_internals_or_secrets(pg_url, engine, worker, gw_home, caplog):
    from deploy.redaction import register

    secret = "sk-live-0123456789abcdef"
    register(secret)
    with make_client(gateway_settings(gw_home, pg_url, worker.port), engine) as client:
        def boom():
            raise RuntimeError(f"database password is {secret}")

        client.app.add_api_route("/api/v1/boom", boom)  # a route that fails as a bug would
        resp = client.get("/api/v1/boom")
    assert resp.status_code == 500
    body = resp.json()
    assert set(body) == {"error", "request_id"} and body["error"] == "internal error"
    assert secret not in resp.text and "Traceback" not in resp.text and "RuntimeError" not in resp.text
    _has_security_headers(resp)
    logged = [r.getMessage() for r in caplog.records if r.name == "tradeloop.gateway"]
    assert any(body["request_id"] in m and "RuntimeError" in m for m in logged)  # the log says what broke
    assert not any(secret in m for m in logged)


def test_validation_errors_do_not_echo_submitted_secrets(client, tokens):
    secret = "my-secret-password-value"
    resp = client.post("/api/v1/auth/password", headers=bearer(tokens["viewer"]),
                       json={"current_password": secret, "new_password": 12345, "extra": secret})
    assert resp.status_code == 422 and secret not in resp.text
    assert "body.extra: Extra inputs are not permitted" in resp.json()["error"]


def test_unknown_paths_and_methods_are_plain_errors(client):
    missing = client.get("/api/v1/nowhere")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = client.delete("/api/v1/health")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
    grant = client.post("/api/v1/auth/token", data={"grant_type": "magic"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
