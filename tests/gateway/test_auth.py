"""Authentication: password and client-credentials grants, lockout, refresh rotation and reuse detection,
revocation, and the tokens that must not work (expired, forged, alg=none, a disabled user's)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import sqlalchemy as sa

from tests.gateway.conftest import PASSWORD, bearer, gateway_settings, login, make_client, new_user


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_password_login_gives_a_working_token_with_the_role_scopes(client, engine):
    name = new_user(engine, "trader")
    resp = login(client, name)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900 and body["refresh_token"]
    assert body["scope"] == "read trade"
    assert resp.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == "tradeloop" and claims["sub"] == name and claims["exp"] - claims["iat"] == 900
    assert claims["jti"] and jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    me = client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["subject"] == name and me.json()["role"] == "trader" and me.json()["scopes"] == ["read", "trade"]


def test_a_narrower_scope_can_be_asked_for_and_a_wider_one_is_refused(client, engine):
    name = new_user(engine, "trader")
    narrow = login(client, name, scope="read")
    assert narrow.status_code == 200 and narrow.json()["scope"] == "read"
    token = narrow.json()["access_token"]
    assert client.post("/api/v1/control/orders", headers=bearer(token),
                       json={"symbol": "BTC/USDT", "side": "buy", "quantity": "1"}).status_code == 403
    wide = login(client, name, scope="read risk")
    assert wide.status_code == 400 and wide.json()["error"] == "invalid_scope"
    # the refresh keeps the narrower scope
    again = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": narrow.json()["refresh_token"]})
    assert again.status_code == 200 and again.json()["scope"] == "read"


def test_wrong_password_and_unknown_user_get_the_same_answer(client, engine):
    name = new_user(engine, "viewer")
    wrong = login(client, name, "not the password at all")
    unknown = login(client, "nobody-" + name, PASSWORD)
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"error": "invalid_grant", "error_description": "wrong username or password"}
    assert "not the password" not in wrong.text


def test_lockout_after_repeated_failures_even_for_the_right_password(pg_url, engine, worker, tmp_path):
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_login_max_failures=3, gateway_lockout_s=60)
    with make_client(settings, engine) as client:
        name = new_user(engine, "viewer")
        for _ in range(3):
            assert login(client, name, "wrong password!!").status_code == 400
        locked = login(client, name)  # the right password, but locked
        assert locked.status_code == 400 and "locked" in locked.json()["error_description"]
        with engine.connect() as conn:
            until = conn.execute(sa.text("SELECT locked_until - now() FROM users WHERE username = :u"),
                                 {"u": name}).scalar()
            audited = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'user_locked'"
                                           " AND scope = :s"), {"s": f"user:{name}"}).scalar()
        assert 50 < until.total_seconds() <= 60 and audited == 1
        with engine.begin() as conn:  # the lock runs out
            conn.execute(sa.text("UPDATE users SET locked_until = now() - interval '1 second' WHERE username = :u"),
                         {"u": name})
        assert login(client, name).status_code == 200


def test_client_credentials_for_an_api_key_and_its_limits(client, engine):
    from orchestration.gateway import users

    owner = new_user(engine, "trader")
    key, secret = users.create_api_key(engine, owner, "bot", ["read", "trade"])
    resp = client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                   "client_secret": secret})
    assert resp.status_code == 200, resp.text
    assert "refresh_token" not in resp.json() and resp.json()["scope"] == "read trade"
    me = client.get("/api/v1/auth/me", headers=bearer(resp.json()["access_token"])).json()
    assert me["kind"] == "api_key" and me["subject"] == key.key_id and me["owner"] == owner
    # HTTP Basic works too (RFC 6749 2.3.1)
    basic = base64.b64encode(f"{key.key_id}:{secret}".encode()).decode()
    assert client.post("/api/v1/auth/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {basic}"}).status_code == 200
    bad = client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                  "client_secret": secret + "x"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    # the secret is stored only as a digest
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT secret_hash FROM api_keys WHERE key_id = :k"), {"k": key.key_id}).scalar()
    assert secret not in stored and len(stored) == 64
    # a key cannot exceed its owner's role
    import pytest

    with pytest.raises(users.UserError, match="cannot hold scope risk"):
        users.create_api_key(engine, owner, "too-much", ["read", "risk"])
    # revoked: the issued token stops working at once, and no new one is issued
    token = resp.json()["access_token"]
    users.revoke_api_key(engine, key.key_id)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                   "client_secret": secret}).status_code == 401


def test_refresh_rotates_and_reuse_revokes_the_whole_family(client, engine):
    name = new_user(engine, "viewer")
    first = login(client, name).json()
    second = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                     "refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    third = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": second["refresh_token"]}).json()
    # an attacker replays the first (already rotated) token: the family dies, the legitimate holder's too
    reuse = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": first["refresh_token"]})
    assert reuse.status_code == 400 and "reused" in reuse.json()["error_description"]
    after = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": third["refresh_token"]})
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    with engine.connect() as conn:
        alive = conn.execute(sa.text("SELECT count(*) FROM refresh_tokens WHERE subject = :u AND revoked_at IS NULL"),
                             {"u": name}).scalar()
        audited = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'refresh_reuse' AND scope = :s"),
                               {"s": f"user:{name}"}).scalar()
        stored = conn.execute(sa.text("SELECT token_hash FROM refresh_tokens WHERE subject = :u"), {"u": name}).scalars().all()
    assert alive == 0 and audited == 1
    assert first["refresh_token"] not in stored and len(stored) == 3  # only digests


def test_an_expired_refresh_token_is_refused(client, engine):
    name = new_user(engine, "viewer")
    got = login(client, name).json()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE subject = :u"),
                     {"u": name})
    resp = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": got["refresh_token"]})
    assert resp.status_code == 400 and resp.json()["error_description"] == "refresh token expired"


def test_revoke_a_refresh_token_and_an_access_token(client, engine):
    name = new_user(engine, "viewer")
    got = login(client, name).json()
    auth = bearer(got["access_token"])
    resp = client.post("/api/v1/auth/revoke", data={"token": got["refresh_token"]}, headers=auth)
    assert resp.status_code == 200 and resp.json()["revoked"] is True
    refused = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": got["refresh_token"]})
    assert refused.status_code == 400
    # someone else's refresh token cannot be revoked by this caller
    other = login(client, new_user(engine, "viewer")).json()
    assert client.post("/api/v1/auth/revoke", data={"token": other["refresh_token"]},
                       headers=auth).json()["revoked"] is False
    assert client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                   "refresh_token": other["refresh_token"]}).status_code == 200
    # the access token itself
    assert client.post("/api/v1/auth/revoke", data={"token": got["access_token"]}, headers=auth).json()["revoked"]
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 401


def _claims(sub: str, **over) -> dict:
    now = int(time.time())
    return {"sub": sub, "kind": "user", "role": "admin", "scope": "read trade risk admin", "jti": "j" + str(now),
            "iat": now, "exp": now + 600, "iss": "tradeloop", **over}


def test_expired_forged_and_alg_none_tokens_are_refused(client, engine, settings):
    from orchestration.gateway.tokens import signing_key

    name = new_user(engine, "viewer")
    key = signing_key(settings)
    good = jwt.encode(_claims(name, role="viewer", scope="read"), key, algorithm="HS256")
    assert client.get("/api/v1/auth/me", headers=bearer(good)).status_code == 200
    now = int(time.time())
    expired = jwt.encode(_claims(name, iat=now - 1000, exp=now - 10), key, algorithm="HS256")
    resp = client.get("/api/v1/auth/me", headers=bearer(expired))
    assert resp.status_code == 401 and resp.json() == {"error": "token expired"}
    assert resp.headers["www-authenticate"] == "Bearer"
    # forged: right claims (even admin scopes), another key
    forged = jwt.encode(_claims(name), b"k" * 32, algorithm="HS256")
    assert client.get("/api/v1/admin/users", headers=bearer(forged)).status_code == 401
    # tampered: a valid token's payload swapped for one claiming admin, signature kept
    head, _, sig = good.split(".")
    tampered = f"{head}.{_b64(_claims(name))}.{sig}"
    assert client.get("/api/v1/admin/users", headers=bearer(tampered)).status_code == 401
    # alg=none, with and without a signature part
    none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(name))}."
    assert client.get("/api/v1/admin/users", headers=bearer(none)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(none)).status_code == 401
    # another algorithm with the same key (HS512) is not accepted either: the algorithm is pinned
    hs512 = jwt.encode(_claims(name, role="viewer", scope="read"), key, algorithm="HS512")
    assert client.get("/api/v1/auth/me", headers=bearer(hs512)).status_code == 401
    # a wrong issuer, a missing jti
    assert client.get("/api/v1/auth/me", headers=bearer(
        jwt.encode(_claims(name, iss="someone"), key, algorithm="HS256"))).status_code == 401
    no_jti = {k: v for k, v in _claims(name).items() if k != "jti"}
    assert client.get("/api/v1/auth/me", headers=bearer(jwt.encode(no_jti, key, algorithm="HS256"))).status_code == 401
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_a_disabled_user_token_stops_working_and_cannot_log_in(client, engine):
    from orchestration.gateway import users

    name = new_user(engine, "trader")
    got = login(client, name).json()
    assert client.get("/api/v1/orders", headers=bearer(got["access_token"])).status_code == 200
    users.set_disabled(engine, name)
    resp = client.get("/api/v1/orders", headers=bearer(got["access_token"]))
    assert resp.status_code == 401 and resp.json()["error"] == "identity disabled or revoked"
    assert login(client, name).status_code == 400
    assert client.post("/api/v1/auth/token", data={"grant_type": "refresh_token",
                                                   "refresh_token": got["refresh_token"]}).status_code == 400


def test_one_time_password_must_be_changed_first(client, engine):
    from orchestration.gateway.users import ensure_first_admin

    name = new_user(engine, "admin", must_change=True)
    got = login(client, name)
    assert got.status_code == 200 and got.json()["must_change_password"] is True
    auth = bearer(got.json()["access_token"])
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 200
    blocked = client.get("/api/v1/admin/users", headers=auth)
    assert blocked.status_code == 403 and "password change required" in blocked.json()["error"]
    short = client.post("/api/v1/auth/password", headers=auth, json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and "12 characters" in short.json()["error"]
    ok = client.post("/api/v1/auth/password", headers=auth,
                     json={"current_password": PASSWORD, "new_password": "a much better passphrase"})
    assert ok.status_code == 200
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 401  # that token is done
    fresh = login(client, name, "a much better passphrase").json()
    assert fresh["must_change_password"] is False
    assert client.get("/api/v1/admin/users", headers=bearer(fresh["access_token"])).status_code == 200
    # an admin exists now (this one): the bootstrap creates nobody and shows no password
    assert ensure_first_admin(engine) is None


def test_token_requests_are_limited_per_address(pg_url, engine, worker, tmp_path):
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_login_rate_per_min=3)
    with make_client(settings, engine) as client:
        codes = [login(client, "nobody", "whatever password").status_code for _ in range(4)]
        assert codes == [400, 400, 400, 429]
        limited = login(client, "nobody", "whatever password")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "too many requests" in limited.json()["error"]


def test_requests_are_limited_per_identity(pg_url, engine, worker, tmp_path):
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_rate_per_min=5)
    with make_client(settings, engine) as client:
        a, b = new_user(engine, "viewer"), new_user(engine, "viewer")
        ta, tb = login(client, a).json()["access_token"], login(client, b).json()["access_token"]
        codes = [client.get("/api/v1/auth/me", headers=bearer(ta)).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        assert client.get("/api/v1/auth/me", headers=bearer(tb)).status_code == 200  # another identity: unaffected


def test_parallel_guesses_cannot_outrun_the_lockout(pg_url, engine, worker, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_login_max_failures=3, gateway_lockout_s=60)
    with make_client(settings, engine) as client:
        name = new_user(engine, "viewer")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: login(client, name, "wrong password!!").json()["error_description"],
                                    range(8)))
    # exactly three guesses were checked; every later one met the lock
    assert answers.count("wrong username or password") == 3, answers
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT locked_until > now() FROM users WHERE username = :u"), {"u": name}).scalar()
