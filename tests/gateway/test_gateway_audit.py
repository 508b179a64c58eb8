"""The gateway's own audit rows (user and key changes through the API and the CLI, password changes, lockouts,
refresh-token reuse) fill audit_log's ``identity`` (who was authenticated; NULL when nobody was) and ``source``
(the caller's address, or ``cli``) columns, and GET /api/v1/audit shows them."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from tests.gateway.conftest import PASSWORD, bearer, gateway_settings, login, make_client, new_user


def _rows(engine, scope: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT actor, action, identity, source, details FROM audit_log WHERE scope = :s ORDER BY ts"),
            {"s": scope})]


def test_admin_api_changes_record_the_admin_and_its_address(client, engine, people, tokens):
    admin, auth = people["admin"], bearer(tokens["admin"])
    name = f"aud-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/admin/users", headers=auth,
                       json={"username": name, "password": PASSWORD, "role": "viewer"}).status_code == 201
    key = client.post("/api/v1/admin/api-keys", headers=auth, json={"owner": name, "name": "k", "scopes": ["read"]})
    assert key.status_code == 201
    assert client.post(f"/api/v1/admin/api-keys/{key.json()['key_id']}/revoke", headers=auth).status_code == 200
    assert client.post(f"/api/v1/admin/users/{name}/disable", headers=auth).status_code == 200
    rows = _rows(engine, f"user:{name}")
    assert [r["action"] for r in rows] == ["user_added", "api_key_created", "api_key_revoked", "user_disabled"]
    for r in rows:
        assert (r["actor"], r["identity"], r["source"]) == (admin, admin, "testclient"), r
        assert PASSWORD not in str(r["details"]) and key.json()["client_secret"] not in str(r["details"])
    # the read API shows the columns
    listed = client.get("/api/v1/audit", params={"scope": f"user:{name}"}, headers=auth).json()["items"]
    assert {(i["identity"], i["source"]) for i in listed} == {(admin, "testclient")}


def test_cli_changes_record_the_os_user_and_cli(engine):
    from orchestration.gateway import users

    name = f"aud-{uuid.uuid4().hex[:8]}"
    users.add_user(engine, name, PASSWORD, "trader", actor="cli:alice")
    users.create_api_key(engine, name, "bot", ["read"], actor="cli:alice")
    assert {(r["identity"], r["source"]) for r in _rows(engine, f"user:{name}")} == {("cli:alice", "cli")}


def test_password_change_records_the_user(client, engine):
    name = new_user(engine, "viewer")
    auth = bearer(login(client, name).json()["access_token"])
    assert client.post("/api/v1/auth/password", headers=auth,
                       json={"current_password": PASSWORD, "new_password": "another fine passphrase"}).status_code == 200
    changed = [r for r in _rows(engine, f"user:{name}") if r["action"] == "password_changed"]
    assert [(r["actor"], r["identity"], r["source"]) for r in changed] == [(name, name, "testclient")]


def test_lockout_and_refresh_reuse_record_the_address_and_no_identity(pg_url, engine, worker, tmp_path):
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_login_max_failures=2, gateway_lockout_s=60)
    with make_client(settings, engine) as client:
        locked = new_user(engine, "viewer")
        for _ in range(2):
            login(client, locked, "wrong password!!")
        reused = new_user(engine, "viewer")
        first = login(client, reused).json()["refresh_token"]
        client.post("/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": first})
        client.post("/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": first})
    lock = [r for r in _rows(engine, f"user:{locked}") if r["action"] == "user_locked"]
    reuse = [r for r in _rows(engine, f"user:{reused}") if r["action"] == "refresh_reuse"]
    # nobody authenticated: the identity is empty, the address is known
    assert [(r["actor"], r["identity"], r["source"]) for r in lock] == [("gateway", None, "testclient")]
    assert [(r["actor"], r["identity"], r["source"]) for r in reuse] == [("gateway", None, "testclient")]
