"""`tradeloop users` and `tradeloop api-keys` as a user runs them (real processes, real database), the first
admin's bootstrap on an empty database, and the JWT key in the secret provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from deploy.settings import REPO_ROOT
from tests.gateway.conftest import login

TRADELOOP = str(Path(sys.executable).parent / "tradeloop")


def tradeloop(pg_url: str, home: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELOOP_", "VAULT_"))}
    env.update(TRADELOOP_HOME=str(home), DATABASE_URL=pg_url, PYTHONPATH=str(REPO_ROOT), **env_extra)
    return subprocess.run([TRADELOOP, *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def cli(pg_url, tmp_path, monkeypatch):
    """`tradeloop ...` in this process (click's runner) against the session database; returns (code, out, err)."""
    from click.testing import CliRunner

    from deploy.settings import get_settings
    from orchestration.cli import main

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("TRADELOOP_HOME", str(tmp_path))
    get_settings.cache_clear()

    def run(*args: str, password: str | None = None):
        env = {"TRADELOOP_PASSWORD": password} if password else {}
        result = CliRunner().invoke(main, list(args), env=env)
        return result.exit_code, result.stdout, result.stderr

    yield run
    get_settings.cache_clear()


def test_users_and_api_keys_from_the_command_line(pg_url, engine, tmp_path, client, cli):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    password = "a long enough cli password"
    # one real process: the commands are registered, the password comes from the environment
    added = tradeloop(pg_url, tmp_path, "users", "add", name, "--role", "trader", TRADELOOP_PASSWORD=password)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"user {name!r} added (trader)" and password not in added.stdout + added.stderr
    assert login(client, name, password).status_code == 200
    code, _, err = cli("users", "add", name, "--role", "viewer", password=password)
    assert code == 2 and err.strip() == f"error: user {name!r} exists"
    code, _, err = cli("users", "add", name + "x", "--role", "viewer")
    assert code == 2 and "TRADELOOP_PASSWORD" in err
    code, _, err = cli("users", "add", name + "y", "--role", "viewer", password="short")
    assert code == 2 and err.strip() == "error: a password needs at least 12 characters"
    code, out, _ = cli("users", "list", "--json")
    mine = [u for u in json.loads(out) if u["username"] == name]
    assert code == 0 and mine and mine[0]["role"] == "trader" and "password_hash" not in mine[0]

    code, out, err = cli("api-keys", "create", "bot", "--owner", name, "--scopes", "read,trade")
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines() if line.startswith("client_"))
    client_id, secret = fields["client_id"].strip(), fields["client_secret"].strip()
    token = client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                    "client_secret": secret})
    assert token.status_code == 200 and token.json()["scope"] == "read trade"
    code, _, err = cli("api-keys", "create", "bot2", "--owner", name, "--scopes", "admin")
    assert code == 2 and "cannot hold scope admin" in err
    code, out, _ = cli("api-keys", "list", "--owner", name, "--json")
    keys = json.loads(out)
    assert [k["key_id"] for k in keys] == [client_id] and secret not in out
    assert keys[0]["last_used_at"] is not None
    code, _, err = cli("api-keys", "revoke", client_id)
    assert code == 0, err
    assert client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                   "client_secret": secret}).status_code == 401

    code, _, _ = cli("users", "disable", name)
    assert code == 0 and login(client, name, password).status_code == 400
    code, _, err = cli("users", "disable", "nobody-" + name)
    assert code == 2 and err.strip() == f"error: no user {'nobody-' + name!r}"
    with engine.connect() as conn:
        actions = conn.execute(sa.text("SELECT action FROM audit_log WHERE scope = :s ORDER BY ts"),
                               {"s": f"user:{name}"}).scalars().all()
    assert actions == ["user_added", "api_key_created", "api_key_revoked", "user_disabled"]


@pytest.fixture
def empty_db(pg_url):
    """A database of its own on the session's server, migrated to head: no users at all."""
    from storage import migrations
    from storage.db import ensure_databases

    name = f"gw_{uuid.uuid4().hex[:8]}"
    server = pg_url.rsplit("/", 1)[0]
    ensure_databases(server + "/postgres", [name])
    url = f"{server}/{name}"
    migrations.upgrade(url)
    eng = sa.create_engine(url)
    yield eng
    eng.dispose()


def test_first_admin_is_created_once_with_a_one_time_password(empty_db, settings):
    from orchestration.gateway.users import ensure_first_admin
    from tests.gateway.conftest import make_client

    password = ensure_first_admin(empty_db)
    assert password and len(password) >= 20
    assert ensure_first_admin(empty_db) is None  # an admin exists: nothing new, nothing shown
    with empty_db.connect() as conn:
        row = conn.execute(sa.text("SELECT role, must_change, password_hash FROM users")).one()
    assert row.role == "admin" and row.must_change and row.password_hash.startswith("$argon2id$")
    assert password not in row.password_hash
    with make_client(settings, empty_db) as client:
        got = login(client, "admin", password)
        assert got.status_code == 200 and got.json()["must_change_password"] is True


def test_the_jwt_key_is_a_named_secret_generated_once(settings, tmp_path):
    from deploy.secrets import FileBackend, SecretsError
    from orchestration.gateway.tokens import signing_key
    from tests.gateway.conftest import gateway_settings

    key = signing_key(settings)
    assert len(key) == 32 and signing_key(settings) == key  # generated once, then read back
    path = settings.home / "secrets.enc"
    assert key.hex() not in path.read_text() and FileBackend(path).list() == []  # encrypted; not an exchange key
    env_only = gateway_settings(tmp_path, "postgresql://x@127.0.0.1:1/x", 1, secrets_backend="env")
    with pytest.raises(SecretsError, match="TRADELOOP_SECRET_GATEWAY_JWT"):
        signing_key(env_only)


def test_users_before_the_platform_was_ever_started_is_one_line(tmp_path):
    """No key store yet (no `tradeloop up`): the gateway role's password is missing -- one line, exit 2."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_") and k != "DATABASE_URL"}
    env["TRADELOOP_HOME"] = str(tmp_path / "never-started")
    done = subprocess.run([str(Path(sys.executable).parent / "tradeloop"), "users", "list"], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "password of role tradeloop_gateway" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
