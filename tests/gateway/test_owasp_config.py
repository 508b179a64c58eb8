"""OWASP API Security Top 10 (2023): API7 Server Side Request Forgery, API8 Security Misconfiguration (with
injection through the read filters), API9 Improper Inventory Management and API10 Unsafe Consumption of APIs,
against the real gateway and PostgreSQL.

Already covered elsewhere (not repeated): security headers on every kind of answer, CORS closed by default and
open only to configured origins, a failing route's 500 without internals, validation errors not echoing a
password, 404/405 bodies (test_app.py); account names with SQL in them refused and a free-text filter taking SQL
as data (test_read.py, four values on two filters). Added here: TRACE and OPTIONS, the database stopped, secrets
in every secret-bearing field of a refused request, every query filter of every read route fed SQL
metacharacters, NUL, unicode, very long values and wrong types, the OpenAPI inventory, and a hostile worker.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from tests.gateway.conftest import CONTROL_TOKEN, bearer, gateway_settings, make_client
from tests.gateway.test_route_matrix import app_routes

MARKER = "S3CRET-marker-0123456789"
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/token")}


def _spec(client) -> dict:
    return client.get("/api/v1/openapi.json").json()


# -- API7 ---------------------------------------------------------------------------------------------------------

URLISH = re.compile(r"url|uri|host|callback|webhook|endpoint|redirect|link|server|address|target", re.I)


def _schema_names(schema, spec, seen=None):
    """Every property name and string format in a schema, $refs followed."""
    seen = seen if seen is not None else set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref and ref not in seen:
            seen.add(ref)
            target = spec
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            yield from _schema_names(target, spec, seen)
        for name, sub in schema.get("properties", {}).items():
            yield name
            yield from _schema_names(sub, spec, seen)
        if schema.get("format"):
            yield "format:" + schema["format"]
        for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            sub = schema.get(key)
            for s in sub if isinstance(sub, list) else [sub]:
                yield from _schema_names(s, spec, seen)


def test_api7_no_route_takes_a_url_or_host_to_fetch(client):
    """API7: the gateway's outbound calls (worker, Dagster, MLflow) go to addresses from its settings; no parameter
    or body field of any operation names a URL, host or callback."""
    spec = _spec(client)
    names = []
    for path, ops in spec["paths"].items():
        for op in ops.values():
            names += [p["name"] for p in op.get("parameters", [])]
            for content in op.get("requestBody", {}).get("content", {}).values():
                names += list(_schema_names(content["schema"], spec))
    assert len(names) > 40
    assert [n for n in names if URLISH.search(n) or n in ("format:uri", "format:url")] == []


def test_api7_the_routes_that_call_out_refuse_a_target_from_the_caller(client, tokens):
    """API7: the three routes that make outbound calls refuse any extra parameter naming a target."""
    auth = bearer(tokens["viewer"])
    for path in ("/api/v1/risk", "/api/v1/models/aliases", "/api/v1/pipeline/runs"):
        for name in ("url", "worker_url", "tracking_uri", "host", "dagster_url"):
            resp = client.get(path, params={name: "http://169.254.169.254/latest/meta-data/"}, headers=auth)
            assert resp.status_code == 422 and f"query.{name}: Extra inputs" in resp.json()["error"], (path, name)
            assert "169.254" not in resp.text


# -- API8 ---------------------------------------------------------------------------------------------------------

def test_api8_trace_and_options_echo_nothing(client, tokens):
    """API8: TRACE is not served (no cross-site tracing echo of headers); OPTIONS without configured CORS is a plain
    405 with no CORS grant."""
    headers = {**bearer(tokens["admin"]), "X-Echo": MARKER, "Cookie": f"session={MARKER}"}
    for path in ("/api/v1/health", "/api/v1/orders", "/api/v1/auth/token", "/api/docs"):
        trace = client.request("TRACE", path, headers=headers)
        assert trace.status_code == 405 and MARKER not in trace.text and tokens["admin"] not in trace.text
        options = client.options(path, headers={"Origin": "https://evil.example", **headers})
        assert options.status_code == 405 and "access-control-allow-origin" not in options.headers
        assert MARKER not in options.text


def test_api8_every_security_header_on_every_kind_of_answer(pg_url, engine, worker, gw_home, tokens):
    """API8: the whole header set of app.API_HEADERS (test_app.py checks four of them) on success, 401, 403, 404,
    405, 413, 422 and 429 answers; the docs pages and their files keep all but their own CSP (and the files
    their cache time); no Server banner or framework header."""
    from orchestration.gateway.app import API_HEADERS, DOCS_CSP

    settings = gateway_settings(gw_home, pg_url, worker.port, gateway_rate_per_min=8, gateway_max_body_bytes=1024)
    with make_client(settings, engine) as client:
        viewer = bearer(tokens["viewer"])
        answers = {
            200: client.get("/api/v1/orders", headers=viewer), 401: client.get("/api/v1/orders"),
            403: client.get("/api/v1/admin/users", headers=viewer), 404: client.get("/api/v1/nowhere"),
            405: client.delete("/api/v1/orders"), 422: client.get("/api/v1/orders", params={"x": 1}, headers=viewer),
            413: client.post("/api/v1/auth/token", data={"grant_type": "password", "password": "p" * 2000}),
        }
        for _ in range(8):
            answers[429] = client.get("/api/v1/auth/me", headers=viewer)
        docs = [client.get("/api/docs"), client.get("/api/docs/redoc"), client.get("/api/docs/assets/swagger-ui.css")]
    for status, resp in answers.items():
        assert resp.status_code == status, (status, resp.status_code)
        for name, value in API_HEADERS.items():
            assert resp.headers.get(name) == value, (status, name, resp.headers.get(name))
        assert "server" not in resp.headers and "x-powered-by" not in resp.headers
    for resp in docs:
        assert resp.status_code == 200 and resp.headers["content-security-policy"] == DOCS_CSP
        for name, value in API_HEADERS.items():
            if name not in ("Content-Security-Policy", "Cache-Control"):
                assert resp.headers.get(name) == value, (resp.url, name)


def test_api8_no_answer_reflects_the_host_header(client, tokens):
    """API8: no redirect (a trailing slash is a 404, not a 307 whose Location would name the caller's Host) and
    no answer repeating the Host header."""
    auth = {**bearer(tokens["viewer"]), "Host": "evil.example"}
    for path in ("/api/v1/orders/", "/api/v1/health/", "/api/docs/", "/api/v1/orders", "/api/v1/nowhere"):
        resp = client.get(path, headers=auth, follow_redirects=False)
        assert resp.status_code in (200, 404) and "location" not in resp.headers, (path, resp.status_code)
        assert "evil.example" not in resp.text


def test_api8_a_stopped_database_gives_plain_errors(gw_home, worker, tokens):
    """API8: with PostgreSQL unreachable, health says so (503), and an authenticated read or a login is a 500
    with a request id only -- no driver message, host, port, user or password."""
    from deploy.stack.process import free_port

    port = free_port()
    url = f"postgresql+psycopg://tradeloop_gateway:{MARKER}@127.0.0.1:{port}/tradeloop"
    settings = gateway_settings(gw_home, url, worker.port)
    engine = sa.create_engine(url, pool_pre_ping=False)
    try:
        with make_client(settings, engine) as client:
            health = client.get("/api/v1/health")
            assert health.status_code == 503 and health.json() == {"error": "database unreachable"}
            answers = [client.get("/api/v1/orders", headers=bearer(tokens["viewer"])),
                       client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "someone",
                                                               "password": MARKER + "-pw"})]
    finally:
        engine.dispose()
    for resp in answers:
        assert resp.status_code == 500 and set(resp.json()) == {"error", "request_id"}, resp.text
        for leak in (MARKER, str(port), "tradeloop_gateway", "psycopg", "OperationalError", "Traceback", "connection"):
            assert leak not in resp.text, leak


SECRET_FIELDS = [  # (method, path, kind of body, body): each carries MARKER in a secret-bearing field, refused
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "password", "username": "u", "password": MARKER * 50}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "client_credentials", "client_id": "tlk_x",
                                            "client_secret": MARKER * 20}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "client_credentials", "client_id": "tlk_x",
                                            "client_secret": MARKER}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "refresh_token", "refresh_token": MARKER * 20}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "refresh_token", "refresh_token": MARKER}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "password", "username": MARKER, "password": MARKER,
                                            "scope": f"read {MARKER}"}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": MARKER, "password": MARKER}),
    ("POST", "/api/v1/auth/revoke", "form", {"token": MARKER * 300}),
    ("POST", "/api/v1/auth/password", "json", {"current_password": MARKER, "new_password": [MARKER]}),
    ("POST", "/api/v1/auth/password", "json", {"current_password": MARKER, "new_password": "short"}),
    ("POST", "/api/v1/auth/password", "raw", '{"current_password": "' + MARKER + '", '),
    ("POST", "/api/v1/admin/users", "json", {"username": "ok-name", "password": MARKER, "role": MARKER}),
    ("POST", "/api/v1/admin/users", "json", {"username": "ok-name", "password": 12345678901234, "role": "viewer"}),
    ("POST", "/api/v1/admin/users", "json", {"username": "ok-name", "password": "short", "role": "viewer"}),
    ("POST", "/api/v1/control/limits", "json", {"params": {"api_secret": MARKER}, "api_key": MARKER}),
    ("GET", "/api/v1/audit", "query", {"scope": MARKER * 10}),
    ("GET", "/api/v1/orders", "query", {"account": f"{MARKER}'"}),
]


@pytest.mark.parametrize("method,path,kind,body", SECRET_FIELDS,
                         ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (_, p, _, _) in enumerate(SECRET_FIELDS)])
def test_api8_a_refused_request_never_echoes_what_it_carried(client, tokens, method, path, kind, body):
    """API8: a request refused for any reason (422, 400, 401) does not send back the secret it carried; the
    error still names the field (validation) or the problem."""
    kwargs = {"form": {"data": body}, "json": {"json": body}, "query": {"params": body},
              "raw": {"content": body, "headers": {"Content-Type": "application/json"}}}[kind]
    headers = {**kwargs.pop("headers", {}), **bearer(tokens["admin"])}
    resp = client.request(method, path, headers=headers, **kwargs)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:200])
    assert MARKER not in resp.text, resp.text[:300]
    assert resp.json().get("error")


READ_VALUES = ["' OR '1'='1", "1; DROP TABLE users; --", "x') UNION SELECT password_hash FROM users --",
               "%' OR 1=1 --", "\\", "\x00", "a\x00b", "ünïcødé ☃ 𝕏 \u202e", "RAW:%ED%A0%BD", "RAW:%FF%FE", "%00", "a" * 10_000,
               "[]", "{}", "1e309", "NaN", "-1", "99999999999999999999", "2026-13-45T99:99:99",
               "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "true", "null", "$where", "${jndi:x}"]


def test_api8_every_read_filter_takes_hostile_values_without_a_500(client, tokens, engine):
    """API8 (injection): every query parameter of every read route, each fed SQL metacharacters, NUL, unicode, bytes
    that are not UTF-8, 10,000 characters and wrong types, answers 422 (refused) or a normal answer -- never a 500 --
    and the database is intact afterwards."""
    with engine.connect() as conn:
        before = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("users", "orders", "trades", "positions", "api_keys")}
    auth = bearer(tokens["admin"])
    spec = _spec(client)
    failures, tried = [], 0
    for path, ops in spec["paths"].items():
        params = [p["name"] for p in ops.get("get", {}).get("parameters", [])]
        for name in params:
            for value in READ_VALUES:
                if value.startswith("RAW:"):  # bytes that are not UTF-8 (a lone surrogate), sent as is
                    resp = client.get(f"{path}?{name}={value[4:]}", headers=auth)
                else:
                    resp = client.get(path, params={name: value}, headers=auth)
                tried += 1
                if resp.status_code not in (200, 422, 503) or "Traceback" in resp.text:
                    failures.append(f"{path}?{name}={value[:30]!r}: {resp.status_code} {resp.text[:120]}")
                elif resp.status_code == 200 and "items" in resp.json() and ("'" in value or ";" in value):
                    assert resp.json()["items"] == [], (path, name, value[:30])  # SQL taken as data: no match
    assert tried > 500 and not failures, "\n".join(failures)
    with engine.connect() as conn:
        after = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in before}
    assert after == before


def test_api8_an_unknown_scope_is_named_by_the_valid_ones_not_echoed(client, people):
    """API8: a refused scope request lists the scopes that exist instead of repeating what was sent (which could
    be anything pasted into the wrong field)."""
    from tests.gateway.conftest import login

    resp = login(client, people["viewer"], scope=f"read {MARKER}")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"
    assert MARKER not in resp.text and "read trade risk admin" in resp.json()["error_description"]


NUL_INPUTS = [  # (method, path, kind, body): a NUL byte where PostgreSQL would choke on it
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "password", "username": "ad\x00min", "password": "x" * 12}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "client_credentials", "client_id": "tlk_\x00",
                                            "client_secret": "s"}),
    ("POST", "/api/v1/auth/token", "form", {"grant_type": "refresh_token", "refresh_token": "r\x00"}),
    ("POST", "/api/v1/auth/revoke", "form", {"token": "t\x00"}),
    ("POST", "/api/v1/control/kill-switch", "json", {"reason": "halt\x00now"}),
    ("POST", "/api/v1/control/limits", "json", {"params": {"max_position": "1\x00"}}),
    ("POST", "/api/v1/control/swap-strategy", "json", {"slot": "s1", "strategy": "sma_cross", "params": {"k\x00": 1}}),
    ("POST", "/api/v1/admin/users", "json", {"username": "nul\x00user", "password": "p" * 16, "role": "viewer"}),
    ("POST", "/api/v1/admin/api-keys", "json", {"owner": "admin", "name": "n\x00", "scopes": ["read"]}),
    ("GET", "/api/v1/audit", "query", {"scope": "account:\x00"}),
]


@pytest.mark.parametrize("method,path,kind,body", NUL_INPUTS,
                         ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (_, p, _, _) in enumerate(NUL_INPUTS)])
def test_api8_a_nul_byte_anywhere_is_refused_not_a_500(client, tokens, worker, method, path, kind, body):
    """API8 (injection): PostgreSQL text cannot hold NUL; a NUL in a form field, a query filter or a control body
    (which the worker would write to its audit row) is refused up front -- never a 500, never sent on."""
    kwargs = {"form": {"data": body}, "json": {"json": body}, "query": {"params": body}}[kind]
    n = len(worker.requests)
    resp = client.request(method, path, headers=bearer(tokens["admin"]), **kwargs)
    assert resp.status_code in (200, 400, 401, 422), (resp.status_code, resp.text[:200])
    if path.startswith("/api/v1/control/"):
        assert resp.status_code == 422 and "NUL" in resp.json()["error"] and len(worker.requests) == n
    if path == "/api/v1/auth/revoke":
        assert resp.json()["revoked"] is False


# -- API9 ---------------------------------------------------------------------------------------------------------

def test_api9_the_openapi_document_lists_exactly_the_served_api(client):
    """API9: every HTTP route the app serves is in the OpenAPI document, under /api/v1, except the document
    itself and the docs pages; nothing in the document is not served; the one WebSocket is /api/v1/stream."""
    from fastapi.routing import iter_route_contexts

    spec = _spec(client)
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    served = {(m, p) for m, p, _ in app_routes(client.app)}
    undocumented = served - documented
    assert undocumented == {("GET", "/api/v1/openapi.json"), ("GET", "/api/docs"), ("GET", "/api/docs/redoc"),
                            ("GET", "/api/docs/assets/{name}")}
    assert documented <= served
    assert all(p.startswith("/api/v1/") for _, p in documented)
    assert {ctx.path for ctx in iter_route_contexts(client.app.routes) if not ctx.methods} == {"/api/v1/stream"}
    assert spec["info"]["version"] == "1"


def test_api9_only_health_and_token_are_documented_without_authentication(client):
    """API9: the document tells the truth about who may call what: every operation but health and the token
    endpoint requires the OAuth2 bearer token (the route matrix proves the gateway behaves so)."""
    spec = _spec(client)
    open_ops = {(m.upper(), p) for p, ops in spec["paths"].items() for m, op in ops.items() if not op.get("security")}
    assert open_ops == PUBLIC


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/api/openapi.json", "/api/v1/docs",
                                  "/api/v0/health", "/api/v2/health", "/api/health", "/health", "/metrics",
                                  "/api/v1/debug", "/api/docs/oauth2-redirect", "/.env", "/api/v1/admin"])
def test_api9_no_default_legacy_or_debug_routes(client, path):
    """API9: no framework default docs, no other API version, no debug or metrics page on the gateway."""
    assert client.get(path).status_code == 404, path


# -- API10 --------------------------------------------------------------------------------------------------------

class HostileWorker:
    """A worker that answers the gateway badly: per path, (status, headers, body)."""

    ANSWERS = {
        "/control/kill_switch": (302, {"Location": "http://127.0.0.1:9/elsewhere"}, b""),
        "/control/resume": (500, {}, f"Traceback (most recent call last): KeyError {MARKER}".encode()),
        "/control/set_limits": (400, {"Content-Type": "application/json"},
                                json.dumps({"error": "refused " + "x" * 5000}).encode()),
        "/control/swap_strategy": (200, {"Content-Type": "text/html"}, f"<html>{MARKER}</html>".encode()),
        "/risk": (200, {"Content-Type": "application/json"}, b"{not json"),
    }

    def __init__(self) -> None:
        answers = self.ANSWERS

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length", 0))
                if length:
                    self.rfile.read(length)
                status, headers, body = answers.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_api10_a_misbehaving_worker_is_not_trusted_blindly(pg_url, engine, gw_home, tokens):
    """API10: the gateway consumes the worker's answers: a redirect is not success (and not followed), a 500's
    body is not passed on, a refusal's text is cut short, a non-JSON body is not echoed, a malformed risk view
    becomes a one-line note."""
    hostile = HostileWorker()
    try:
        with make_client(gateway_settings(gw_home, pg_url, hostile.port), engine) as client:
            risk = bearer(tokens["risk_officer"])
            redirected = client.post("/api/v1/control/kill-switch", headers=risk, json={"reason": "x"})
            failed = client.post("/api/v1/control/resume", headers=risk, json={})
            refused = client.post("/api/v1/control/limits", headers=risk, json={"params": {"max_position": 1}})
            odd = client.post("/api/v1/control/swap-strategy", headers=bearer(tokens["trader"]),
                              json={"slot": "s1", "strategy": "sma_cross"})
            view = client.get("/api/v1/risk", headers=bearer(tokens["viewer"]))
    finally:
        hostile.close()
    assert redirected.status_code == 502 and redirected.json() == {"error": "the worker failed the action (302)"}
    assert failed.status_code == 502 and MARKER not in failed.text and "Traceback" not in failed.text
    assert refused.status_code == 409 and refused.json()["error"].startswith("the worker refused set_limits: refused")
    assert len(refused.json()["error"]) < 400
    assert odd.status_code == 200 and MARKER not in odd.text and odd.json()["worker"] == {}
    assert view.status_code == 200 and view.json()["worker"] is None
    assert view.json()["worker_error"] == "the worker did not answer (JSONDecodeError)"
    assert CONTROL_TOKEN not in redirected.text + failed.text + view.text


def test_api10_the_worker_is_called_with_its_token_at_its_configured_address_only(client, tokens, worker):
    """API10: outbound control requests carry the worker's bearer token and go to settings.worker_url; a Host
    header or forwarding headers from the caller change nothing."""
    n = len(worker.requests)
    resp = client.post("/api/v1/control/resume", json={},
                       headers={**bearer(tokens["risk_officer"]), "Host": "evil.example",
                                "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "10.9.9.9"})
    assert resp.status_code == 200 and len(worker.requests) == n + 1
    sent = worker.requests[-1]
    assert sent["auth"] == f"Bearer {CONTROL_TOKEN}"
    body = sent["body"]
    source = body.get("source")
    assert source == "testclient" and "10.9.9.9" not in json.dumps(body)  # X-Forwarded-For is not trusted
