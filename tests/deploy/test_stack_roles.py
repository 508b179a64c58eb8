"""`tradeloop up` wires each service to its own PostgreSQL role, and no password shows where others can read it
(process arguments, `tradeloop status`, the run records, the logs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.deploy.test_stack_cli import home, tradeloop  # noqa: F401 - the fixture


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _user(url: str) -> str:
    return make_url(url).username


@pytest.mark.slow
def test_each_service_connects_as_its_own_role_and_no_password_leaks(home, monkeypatch):  # noqa: F811
    from deploy.stack import pgroles, postgres

    # as on a fresh machine, `up` generates the key file's passphrase beside it; this process reads the database
    # passwords through that file too, not with the test session's passphrase
    monkeypatch.delenv("TRADELOOP_SECRETS_PASSPHRASE")

    up = tradeloop(home, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    status = tradeloop(home, "status", "--json")
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert rows["postgres"]["url"] == f"postgresql+psycopg://tradeloop@127.0.0.1:{home.pg_port}/tradeloop"

    env = {name: _environ(rows[name]["pid"]) for name in ("worker", "feed", "dagster-daemon", "dagster-webserver",
                                                           "mlflow")}
    assert _user(env["worker"]["DATABASE_URL"]) == "tradeloop_stream"
    assert _user(env["feed"]["DATABASE_URL"]) == "tradeloop_read"
    for name in ("dagster-daemon", "dagster-webserver"):
        assert _user(env[name]["DATABASE_URL"]) == "tradeloop_batch"
        assert _user(env[name]["TRADELOOP_DAGSTER_PG_URL"]) == "tradeloop_dagster"
        assert make_url(env[name]["TRADELOOP_DAGSTER_PG_URL"]).database == "dagster"
    assert _user(env["mlflow"]["MLFLOW_BACKEND_STORE_URI"]) == "tradeloop_mlflow"

    passwords = {make_url(home.database_url_for(c)).password for c in (pgroles.ADMIN, *pgroles.COMPONENTS)}
    assert len(passwords) == len(pgroles.COMPONENTS) + 1 and all(len(p) >= 32 for p in passwords)
    for row in rows.values():
        if row["pid"]:
            cmdline = Path(f"/proc/{row['pid']}/cmdline").read_bytes().decode(errors="replace")
            assert not any(p in cmdline for p in passwords), row["name"]
    for text in [up.stdout, up.stderr, status.stdout,
                 *(p.read_text(errors="replace") for p in home.log_dir.glob("*") if p.is_file()),
                 *(p.read_text(errors="replace") for p in home.run_dir.glob("*") if p.is_file())]:
        assert not any(p in text for p in passwords)

    # the server sees the roles at work; a second migrate (grants again) is harmless
    assert tradeloop(home, "migrate").returncode == 0
    engine = sa.create_engine(postgres.url(home, home.pg_port), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        users = set(conn.execute(sa.text("SELECT DISTINCT usename FROM pg_stat_activity WHERE usename IS NOT NULL"
                                         )).scalars())
    assert "tradeloop_stream" in users, users
    for database in ("mlflow", "dagster"):  # each made its schema as its own role
        other = sa.create_engine(postgres.url(home, home.pg_port, database), poolclass=sa.pool.NullPool)
        with other.connect() as conn:
            owners = set(conn.execute(sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
                                              )).scalars())
        other.dispose()
        assert owners == {f"tradeloop_{database}"}, (database, owners)
    # the worker, as its role, records the feed's bars and its signals (the first bar closes within a minute)
    deadline = time.monotonic() + 150
    written = 0
    while not written and time.monotonic() < deadline:
        with engine.connect() as conn:
            written = conn.execute(sa.text("SELECT (SELECT count(*) FROM market_data WHERE exchange = 'sim')"
                                           " + (SELECT count(*) FROM signals)")).scalar()
        time.sleep(3)
    engine.dispose()
    assert written, "the worker wrote nothing in 150 s"
    refused = [p.name for p in home.log_dir.glob("*.log") if "permission denied" in p.read_text(errors="replace")]
    assert not refused, f"a service was refused by PostgreSQL: see {refused}"
