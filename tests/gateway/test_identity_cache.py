"""The identity-check cache (orchestration/gateway/revocation.py) does not weaken revocation: a disable or revoke
through the gateway's admin routes is refused on the very next request, one made by another process through
tradeloop (NOTIFY) within moments, one made behind tradeloop's back (plain SQL) within the TTL; a logout in one
gateway process reaches the others; without its listener a process caches nothing."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tests.gateway.conftest import bearer, gateway_settings, login, make_client, new_user

TTL = 1.5


@pytest.fixture()
def cached(tmp_path, pg_url, worker, engine):
    """A gateway app of its own with a short identity cache, its lifespan (and listener) running."""
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_identity_cache_s=TTL)
    with make_client(settings, engine) as c:
        assert c.app.state.gateway.events.connected.is_set(), "the gateway's listener did not connect"
        yield c


def _until_refused(client, token: str, limit_s: float) -> float:
    """Seconds until the token's read is refused (401 'identity disabled or revoked'); fails after limit_s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        resp = client.get("/api/v1/positions", headers=bearer(token))
        if resp.status_code == 401:
            assert resp.json()["error"] in ("identity disabled or revoked", "token revoked")
            return time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        time.sleep(0.02)
    raise AssertionError(f"still accepted after {limit_s} s")


def _primed(client, engine, role: str = "viewer") -> tuple[str, str]:
    """A new user and its token, found active once (so the cache holds it)."""
    name = new_user(engine, role)
    token = login(client, name).json()["access_token"]
    assert client.get("/api/v1/positions", headers=bearer(token)).status_code == 200
    assert client.app.state.gateway.cached_active("user", name)
    return name, token


def test_disabled_through_the_admin_route_is_refused_on_the_next_request(cached, engine, people):
    name, token = _primed(cached, engine)
    admin = login(cached, people["admin"]).json()["access_token"]
    assert cached.post(f"/api/v1/admin/users/{name}/disable", headers=bearer(admin)).status_code == 200
    resp = cached.get("/api/v1/positions", headers=bearer(token))
    assert resp.status_code == 401 and resp.json()["error"] == "identity disabled or revoked"


def test_an_api_key_revoked_through_the_admin_route_is_refused_on_the_next_request(cached, engine, people):
    from orchestration.gateway import users

    owner = new_user(engine, "viewer")
    key, secret = users.create_api_key(engine, owner, "bot", ["read"])
    token = cached.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                    "client_secret": secret}).json()["access_token"]
    assert cached.get("/api/v1/positions", headers=bearer(token)).status_code == 200
    assert cached.app.state.gateway.cached_active("api_key", key.key_id)
    admin = login(cached, people["admin"]).json()["access_token"]
    assert cached.post(f"/api/v1/admin/api-keys/{key.key_id}/revoke", headers=bearer(admin)).status_code == 200
    assert cached.get("/api/v1/positions", headers=bearer(token)).status_code == 401


def test_disabled_by_another_process_through_tradeloop_is_refused_within_moments(cached, engine):
    # what users.set_disabled does in another process (the CLI): the UPDATE and the NOTIFY in one transaction --
    # this process's own cache is not touched directly, only the listener can empty it
    name, token = _primed(cached, engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET disabled = true WHERE username = :u"), {"u": name})
        conn.execute(sa.text("SELECT pg_notify('tradeloop_gateway', 'identity')"))
    assert _until_refused(cached, token, TTL + 1.0) < TTL / 2


def test_disabled_behind_tradeloops_back_is_refused_within_the_ttl(cached, engine):
    name, token = _primed(cached, engine)
    primed_at = time.monotonic()
    with engine.begin() as conn:  # plain SQL: no notification, only the TTL bounds it
        conn.execute(sa.text("UPDATE users SET disabled = true WHERE username = :u"), {"u": name})
    if time.monotonic() - primed_at < TTL / 3:  # the cache is really used (on a very slow machine: not checkable)
        assert cached.get("/api/v1/positions", headers=bearer(token)).status_code == 200
    _until_refused(cached, token, TTL + 1.0)
    assert time.monotonic() - primed_at <= TTL + 1.0


def test_a_logout_in_one_gateway_process_reaches_another(tmp_path, pg_url, worker, engine, cached):
    # a second app, as a second server process: the same home (so the same JWT key), its own memory and listener
    other_settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_identity_cache_s=TTL)
    with make_client(other_settings, engine) as other:
        assert other.app.state.gateway.events.connected.wait(5)
        name, token = _primed(cached, engine)
        assert other.get("/api/v1/positions", headers=bearer(token)).status_code == 200
        assert cached.post("/api/v1/auth/revoke", data={"token": token}, headers=bearer(token)).json()["revoked"]
        assert cached.get("/api/v1/positions", headers=bearer(token)).status_code == 401
        assert _until_refused(other, token, 2.0) < 2.0
        assert other.get("/api/v1/positions", headers=bearer(token)).json()["error"] == "token revoked"


def test_without_its_listener_a_process_caches_nothing(tmp_path, pg_url, worker, engine):
    settings = gateway_settings(tmp_path, pg_url, worker.port, gateway_identity_cache_s=10.0)
    client = make_client(settings, engine)  # no `with`: the lifespan, and so the listener, never ran
    name = new_user(engine, "viewer")
    token = login(client, name).json()["access_token"]
    assert client.get("/api/v1/positions", headers=bearer(token)).status_code == 200
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET disabled = true WHERE username = :u"), {"u": name})
    assert client.get("/api/v1/positions", headers=bearer(token)).status_code == 401


def test_an_answer_asked_before_an_invalidation_is_not_kept_after_it():
    from orchestration.gateway.revocation import IdentityCache

    now = [100.0]
    cache = IdentityCache(2.0, clock=lambda: now[0])
    cache.enabled = True
    generation = cache.generation()
    cache.invalidate()  # a disable committed while the question was on its way
    cache.put("user:a", now[0], generation)
    assert not cache.get("user:a")
    cache.put("user:a", now[0], cache.generation())
    assert cache.get("user:a")
    now[0] += 2.0  # exactly the TTL later: no longer trusted
    assert not cache.get("user:a")
    cache.enabled = False  # listener down: nothing is trusted
    cache.put("user:b", now[0], cache.generation())
    assert not cache.get("user:b")


def test_each_server_process_enforces_its_share_of_the_rate_limits():
    from orchestration.gateway.limits import Limits, RateLimited

    share = Limits(5, 3, processes=2)  # ceil(5 / 2) = 3 per identity, ceil(3 / 2) = 2 per address
    for _ in range(3):
        share.identity("user:a")
    with pytest.raises(RateLimited):
        share.identity("user:a")
    share.token_request("10.0.0.1")
    share.token_request("10.0.0.1")
    with pytest.raises(RateLimited):
        share.token_request("10.0.0.1")
