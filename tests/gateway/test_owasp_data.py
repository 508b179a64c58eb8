"""OWASP API Security Top 10 (2023): API3 Broken Object Property Level Authorization -- excessive data exposure
and mass assignment -- against the real gateway and PostgreSQL.

Already covered elsewhere (not repeated): a ``who`` field on the kill switch and an extra field on the password
change are refused (test_route_matrix.py, test_app.py); an API key secret is stored only as a digest
(test_auth.py). Added here: every GET answer (and the stream's first message) walked as admin for any secret the
platform holds; the exact fields of the identity, user, key and token answers; every JSON body of every POST route
refusing any field it does not declare; the form endpoints ignoring extra fields without effect.
"""

from __future__ import annotations

import base64
import uuid

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from tests.gateway.conftest import CONTROL_TOKEN, PASSWORD, bearer, login, new_user
from tests.gateway.test_owasp_authz import CONTROL_BODIES
from tests.gateway.test_route_matrix import app_routes

USER_FIELDS = {"username", "role", "disabled", "must_change", "created_at", "locked_until", "accounts"}
KEY_FIELDS = {"key_id", "name", "owner", "scopes", "created_at", "last_used_at", "revoked_at"}
ME_FIELDS = {"subject", "kind", "role", "scopes", "owner", "source", "must_change", "accounts"}


def _forms(raw: bytes) -> set[str]:
    """The ways a key could be printed: hex, base64, base64url, with and without padding."""
    forms = {raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return forms | {f.rstrip("=") for f in forms}


@pytest.fixture(scope="module")
def secrets_held(engine, settings, pg_url, client) -> dict[str, str]:
    """Every secret the platform holds that an answer could leak: what -> value."""
    from deploy.secrets import control_signing_key
    from orchestration.gateway import users
    from orchestration.gateway.tokens import signing_key

    owner = new_user(engine, "trader")
    _, key_secret = users.create_api_key(engine, owner, "leak-check", ["read"])
    refresh = login(client, owner).json()["refresh_token"]
    found = {"api key secret": key_secret, "refresh token": refresh, "user password": PASSWORD,
             "worker control token": CONTROL_TOKEN, "key store passphrase": "gateway tests passphrase"}
    for i, form in enumerate(_forms(signing_key(settings))):
        found[f"JWT signing key ({i})"] = form
    for i, form in enumerate(_forms(control_signing_key(settings, create=True)[1])):
        found[f"control signing key ({i})"] = form
    password = sa.engine.make_url(pg_url).password
    if password:
        found["database password"] = password
    with engine.connect() as conn:
        for what, sql in (("password hash", "SELECT password_hash FROM users"),
                          ("api key digest", "SELECT secret_hash FROM api_keys"),
                          ("refresh token digest", "SELECT token_hash FROM refresh_tokens")):
            for i, value in enumerate(conn.execute(sa.text(sql)).scalars()):
                found[f"{what} {i}"] = value
    assert any(k.startswith("password hash") for k in found) and any(k.startswith("api key digest") for k in found)
    return found


def _leaks(text: str, held: dict[str, str]) -> list[str]:
    out = [what for what, value in held.items() if value and value in text]
    for marker in ("$argon2", "password_hash", "secret_hash", "token_hash", "postgresql://",
                   "postgresql+psycopg://"):
        if marker in text:
            out.append(marker)
    return out


def test_api3_no_get_answer_exposes_a_secret(client, tokens, secrets_held, engine):
    """API3 (excessive data exposure): every GET route of /api/v1 as admin -- the widest view -- and the stream's
    first message contain no password hash, argon2 string, key or token digest, JWT or control signing key,
    worker token, API key secret, refresh token or database URL."""
    from orchestration.gateway import users

    auth = bearer(tokens["admin"])
    admin_name = client.get("/api/v1/auth/me", headers=auth).json()["subject"]
    with engine.begin() as conn:  # an audit row of each gateway kind is among what /audit returns
        users.audit(conn, "user_locked", f"user:{admin_name}", "owasp", actor="gateway", identity=None,
                    source="testclient")
    walked = []
    for method, path, _ in app_routes(client.app):
        if method != "GET" or not path.startswith("/api/v1/"):
            continue
        resp = client.get(path, headers=auth)
        assert resp.status_code in (200, 503), (path, resp.status_code)
        assert _leaks(resp.text, secrets_held) == [], path
        walked.append(path)
    assert len(walked) >= 15, walked
    with client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"access_token": tokens["admin"]})
        hello = ws.receive_json()
    assert hello["type"] == "hello" and _leaks(str(hello), secrets_held) == []


def test_api3_identity_user_key_and_token_answers_name_only_their_fields(client, tokens, engine):
    """API3: allow-lists, so a column added to users or api_keys does not reach an answer unnoticed."""
    auth = bearer(tokens["admin"])
    assert set(client.get("/api/v1/auth/me", headers=auth).json()) == ME_FIELDS
    listed = client.get("/api/v1/admin/users", headers=auth).json()["items"]
    assert listed and all(set(u) == USER_FIELDS for u in listed)
    owner = new_user(engine, "viewer")
    made = client.post("/api/v1/admin/api-keys", headers=auth, json={"owner": owner, "name": "f", "scopes": ["read"]})
    assert set(made.json()) == KEY_FIELDS | {"client_id", "client_secret"}  # the secret: in this answer only
    assert made.headers["cache-control"] == "no-store"
    keys = client.get("/api/v1/admin/api-keys", headers=auth).json()["items"]
    assert keys and all(set(k) == KEY_FIELDS for k in keys)
    assert made.json()["client_secret"] not in client.get("/api/v1/admin/api-keys", headers=auth).text
    user = client.post("/api/v1/admin/users", headers=auth,
                       json={"username": f"f-{uuid.uuid4().hex[:6]}", "password": PASSWORD, "role": "viewer"})
    assert user.status_code == 201 and set(user.json()) == USER_FIELDS and PASSWORD not in user.text
    token = login(client, owner).json()
    assert set(token) == {"access_token", "token_type", "expires_in", "scope", "refresh_token", "must_change_password"}


def _json_post_routes(app) -> dict[str, type[BaseModel]]:
    """path -> body model of every POST route with a JSON body."""
    out = {}
    for method, path, route in app_routes(app):
        if method != "POST":
            continue
        for param in route.dependant.body_params:
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                out[path] = annotation
    return out


VALID = {**CONTROL_BODIES,
         "/api/v1/auth/password": {"current_password": "wrong on purpose!", "new_password": "n" * 16},
         "/api/v1/admin/users": {"username": "mass-assign", "password": "p" * 16, "role": "viewer"},
         "/api/v1/admin/api-keys": {"owner": "mass-assign", "name": "k", "scopes": ["read"]}}
INJECTED = {"role": "admin", "who": "root", "identity": "root", "source": "10.0.0.1", "sig": "forged",
            "kid": "other", "is_admin": True, "scopes": ["admin"], "accounts": None, "password_hash": "$argon2id$v=19$x",
            "secret_hash": "0" * 64, "key_id": "tlk_0000", "owner": "admin", "disabled": False, "must_change": False,
            "locked_until": None, "created_at": "2020-01-01T00:00:00Z", "action": "resume", "flatten": True,
            "worker_url": "http://127.0.0.1:9"}


def test_api3_every_json_body_model_forbids_unknown_fields(client):
    """API3 (mass assignment), statically: every body model of every POST route, nested ones too."""
    routes = _json_post_routes(client.app)
    assert set(routes) == set(VALID), "a POST route with a JSON body has no VALID body here"

    def closed(model: type[BaseModel]) -> None:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for field in model.model_fields.values():
            inner = field.annotation
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                closed(inner)

    for model in routes.values():
        closed(model)


@pytest.mark.parametrize("path", sorted(VALID))
def test_api3_every_post_body_refuses_each_undeclared_field(client, tokens, worker, path):
    """API3 (mass assignment), by request as admin: the valid body plus any one field the route does not declare
    (role, who, identity, source, a hash...) is a 422 naming that field; nothing reaches the worker or the store."""
    model = _json_post_routes(client.app)[path]
    concrete = path.replace("{client_order_id}", "c-mass")
    auth = bearer(tokens["admin"])
    n = len(worker.requests)
    tried = 0
    for name, value in INJECTED.items():
        if name in model.model_fields:
            continue
        resp = client.post(concrete, headers=auth, json={**VALID[path], name: value})
        assert resp.status_code == 422, (path, name, resp.status_code)
        assert f"body.{name}: Extra inputs are not permitted" in resp.json()["error"], resp.json()["error"]
        tried += 1
    assert tried >= 10
    assert len(worker.requests) == n


def test_api3_extra_form_fields_of_the_token_endpoint_change_nothing(client, engine):
    """API3: a form body cannot be closed like a JSON model; the token endpoint reads its fixed fields only, so
    role, scopes, accounts or kind sent beside them grant nothing."""
    name = new_user(engine, "viewer", accounts=["acct-a"])
    resp = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD,
                                                   "role": "admin", "scopes": "admin", "accounts": "",
                                                   "kind": "api_key", "must_change": "false"})
    assert resp.status_code == 200 and resp.json()["scope"] == "read"
    me = client.get("/api/v1/auth/me", headers=bearer(resp.json()["access_token"])).json()
    assert (me["role"], me["scopes"], me["accounts"], me["kind"]) == ("viewer", ["read"], ["acct-a"], "user")


def test_api3_the_gateways_security_rows_of_the_audit_log_are_for_admins(client, engine, tokens):
    """API3: lockouts, key creations (with key ids), refresh-token reuse and user changes are the admin's business:
    a viewer's /audit has no ``user:`` rows, an admin's has them."""
    from orchestration.gateway import users

    name = new_user(engine, "viewer")
    users.create_api_key(engine, name, "seen-by-admins", ["read"])
    for role in ("viewer", "trader", "risk_officer"):
        rows = client.get("/api/v1/audit", params={"limit": 500}, headers=bearer(tokens[role])).json()["items"]
        assert not [r for r in rows if r["scope"].startswith("user:")], role
        by_scope = client.get("/api/v1/audit", params={"scope": f"user:{name}"}, headers=bearer(tokens[role]))
        assert by_scope.status_code == 200 and by_scope.json()["items"] == []
    admin = client.get("/api/v1/audit", params={"scope": f"user:{name}"}, headers=bearer(tokens["admin"]))
    assert [r["action"] for r in admin.json()["items"]] == ["api_key_created", "user_added"]
