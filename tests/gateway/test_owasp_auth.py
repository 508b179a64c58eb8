"""OWASP API Security Top 10 (2023): API2 Broken Authentication, against the real gateway and PostgreSQL.

Already covered in test_auth.py (not repeated): expired, forged, tampered, alg=none, HS512, wrong issuer and
missing-jti tokens; refresh rotation and reuse revoking the whole family; lockout after repeated failures and
parallel guesses; the same answer for an unknown user and a wrong password; a disabled user's and a revoked key's
tokens. Added here: that an unknown user costs as long as a wrong password (timing), more header and claim tricks
signed with the real key (unknown kind, future nbf/iat, header keys pointing elsewhere), and that only an access
token in the Authorization header authenticates (not a refresh token, an API key secret, a query parameter or a
cookie).
"""

from __future__ import annotations

import base64
import json
import statistics
import time

import jwt
import pytest

from tests.gateway.conftest import PASSWORD, bearer, login, new_user


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(sub: str, **over) -> dict:
    now = int(time.time())
    return {"sub": sub, "kind": "user", "role": "viewer", "scope": "read", "jti": f"j{now}{sub}", "iat": now,
            "exp": now + 600, "iss": "tradeloop", **over}


def _median_login_s(client, username: str, password: str, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        assert login(client, username, password).status_code == 400
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@pytest.mark.timeout(120)
def test_api2_an_unknown_or_disabled_user_costs_as_long_as_a_wrong_password(client, engine):
    """API2 (user enumeration by timing): argon2 runs against a dummy hash when the user does not exist."""
    from orchestration.gateway import users

    real = new_user(engine, "viewer")
    disabled = new_user(engine, "viewer")
    users.set_disabled(engine, disabled)
    login(client, "warm-up-" + real, "x" * 12)  # the dummy hash is computed once, on first use
    wrong = _median_login_s(client, real, "wrong password one", n=3)  # 3: below the lockout (5)
    unknown = _median_login_s(client, "nobody-" + real, "wrong password one")
    off = _median_login_s(client, disabled, "wrong password one")
    assert wrong > 0.005, wrong  # a real argon2 verification happened
    for other in (unknown, off):
        # without the dummy hash an unknown user answers in ~1/50 of the time: a wide band is still decisive
        assert 0.4 < other / wrong < 2.5, (wrong, unknown, off)


def test_api2_tokens_signed_with_the_real_key_but_wrong_claims_are_refused(client, engine, settings):
    """API2: the signature is not enough -- kind, scope type, issuer, expiry, not-before and issued-at are checked,
    and the subject must exist and be active."""
    from orchestration.gateway.tokens import signing_key

    key = signing_key(settings)
    name = new_user(engine, "viewer")
    now = int(time.time())
    good = jwt.encode(_claims(name), key, algorithm="HS256")
    assert client.get("/api/v1/auth/me", headers=bearer(good)).status_code == 200
    bad = {
        "unknown kind": _claims(name, kind="service"),
        "scope not a string": _claims(name, scope=["read", "admin"]),
        "not yet valid": _claims(name, nbf=now + 3600),
        "issued in the future": _claims(name, iat=now + 3600, exp=now + 7200),
        "no exp": {k: v for k, v in _claims(name).items() if k != "exp"},
        "no sub": {k: v for k, v in _claims(name).items() if k != "sub"},
        "unknown subject": _claims("nobody-" + name),
        "api key that does not exist": _claims("tlk_0000000000000000", kind="api_key", role="api_key"),
    }
    for what, claims in bad.items():
        resp = client.get("/api/v1/auth/me", headers=bearer(jwt.encode(claims, key, algorithm="HS256")))
        assert resp.status_code == 401, what
    # unknown scopes in a signed token grant nothing beyond the known ones
    odd = jwt.encode(_claims(name, scope="read superuser root"), key, algorithm="HS256")
    assert client.get("/api/v1/auth/me", headers=bearer(odd)).json()["scopes"] == ["read"]


def test_api2_header_tricks_do_not_bypass_the_signature(client, engine, settings):
    """API2: alg spelled differently, an empty signature, and jku/x5u/kid/jwk headers naming another key (signed
    with that other key) are all refused: the gateway uses its one key and HS256 only."""
    from orchestration.gateway.tokens import signing_key

    name = new_user(engine, "viewer")
    claims = _claims(name, role="admin", scope="read trade risk admin")
    payload = _b64(claims)
    attacker = b"a" * 32
    tokens = [f"{_b64({'alg': alg, 'typ': 'JWT'})}.{payload}." for alg in ("None", "NONE", "nOnE", "")]
    good = jwt.encode(claims, signing_key(settings), algorithm="HS256")
    tokens.append(good.rsplit(".", 1)[0] + ".")  # the real header and payload, no signature
    for header in ({"jku": "http://127.0.0.1:9/keys.json"}, {"x5u": "http://127.0.0.1:9/cert.pem"},
                   {"kid": "../../../../dev/null"}, {"kid": "gateway-jwt"},
                   {"jwk": {"kty": "oct", "k": base64.urlsafe_b64encode(attacker).decode()}}):
        tokens.append(jwt.encode(claims, attacker, algorithm="HS256", headers=header))
    for token in tokens:
        assert client.get("/api/v1/admin/users", headers=bearer(token)).status_code == 401, token[:60]
    # the genuine token (admin claims for a viewer) works only because it carries the real signature: that is
    # why the key never leaves the gateway (test_owasp_data.py looks for it in every answer)
    assert client.get("/api/v1/auth/me", headers=bearer(good)).status_code == 200


def test_api2_only_an_access_token_in_the_authorization_header_authenticates(client, engine):
    """API2: a refresh token, an API key secret or key id, a token in the query string or a cookie do not."""
    from orchestration.gateway import users

    name = new_user(engine, "trader")
    got = login(client, name).json()
    key, secret = users.create_api_key(engine, name, "k", ["read"])
    for credential in (got["refresh_token"], secret, key.key_id, f"{key.key_id}:{secret}", PASSWORD):
        assert client.get("/api/v1/auth/me", headers=bearer(credential)).status_code == 401
    basic = base64.b64encode(f"{key.key_id}:{secret}".encode()).decode()
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Basic {basic}"}).status_code == 401
    token = got["access_token"]
    assert client.get("/api/v1/auth/me", params={"access_token": token}).status_code == 401
    assert client.get("/api/v1/orders", params={"access_token": token}).status_code in (401, 422)
    assert client.get("/api/v1/auth/me", headers={"Cookie": f"access_token={token}; Authorization=Bearer%20{token}"}
                      ).status_code == 401
    # the token endpoint's password grant takes the form body only, not the query string
    resp = client.post("/api/v1/auth/token", params={"grant_type": "password", "username": name, "password": PASSWORD})
    assert resp.status_code == 422 and PASSWORD not in resp.text


def test_api2_a_password_change_ends_every_refresh_token_of_the_user(client, engine):
    """API2: after /auth/password every refresh token of the user, from every login, is dead (the access token
    that made the change too: test_auth.py). Other logins' access tokens live until they expire (15 min):
    security.py checks the user is active, not when its password changed."""
    name = new_user(engine, "viewer")
    one, two = login(client, name).json(), login(client, name).json()
    assert client.post("/api/v1/auth/password", headers=bearer(one["access_token"]),
                       json={"current_password": PASSWORD, "new_password": "a different passphrase"}).status_code == 200
    for refresh in (one["refresh_token"], two["refresh_token"]):
        resp = client.post("/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert login(client, name).status_code == 400  # the old password is gone
