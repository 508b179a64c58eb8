"""`tradeloop up | status | down` end to end, as a user runs them: real processes, real ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import make_settings

TRADELOOP = str(Path(sys.executable).parent / "tradeloop")


def env_for(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
    env.pop("DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP", None)
    env.update({
        "TRADELOOP_HOME": str(settings.home),
        "TRADELOOP_PG_PORT": str(settings.pg_port),
        "TRADELOOP_BROKER_PORT": str(settings.broker_port),
        "TRADELOOP_MLFLOW_PORT": str(settings.mlflow_port),
        "TRADELOOP_DAGSTER_PORT": str(settings.dagster_port),
        "TRADELOOP_WORKER_PORT": str(settings.worker_port),
        "TRADELOOP_DOCS_PORT": str(settings.docs_port),
        "TRADELOOP_SUPERVISOR_PORT": str(settings.supervisor_port),
        "TRADELOOP_GATEWAY_PORT": str(settings.gateway_port),
        # no TRADELOOP_SECRETS_PASSPHRASE: as on a fresh machine, `up` generates the key file's passphrase beside
        # it, and every process it starts (and the CLI) reads the database passwords through it
        "PYTHONPATH": str(Path(__file__).parents[2]),  # this tree's code, in `tradeloop` and what it starts
    })
    return env


def tradeloop(settings, *args: str, timeout: float = 300, extra_env: dict | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run([TRADELOOP, *args], env={**env_for(settings), **(extra_env or {})}, capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).parents[2])


@pytest.fixture
def home(tmp_path):
    settings = make_settings(tmp_path / "home")
    yield settings
    tradeloop(settings, "down")  # never leave a service behind, whatever the test did


# accelerated autonomy: two symbols, two days of history, the cold-start sensor every 5 s
AUTONOMY = {"TRADELOOP_SYMBOLS": '["BTC/USDT", "SOL/USDT"]', "TRADELOOP_BOOTSTRAP_DAYS": "2",
            "TRADELOOP_BOOTSTRAP_INTERVAL_S": "5"}


@pytest.mark.slow
def test_up_status_down_and_data_survives_a_restart(home, monkeypatch):
    """A fresh stack, left alone, reaches its first model gate decision; the supervisor restarts a killed
    worker; data survives down/up."""
    first = tradeloop(home, "up", extra_env=AUTONOMY)
    assert first.returncode == 0, first.stderr + first.stdout
    for url in (f"http://127.0.0.1:{home.dagster_port}", f"http://127.0.0.1:{home.mlflow_port}",
                f"http://127.0.0.1:{home.worker_port}/health", f"http://127.0.0.1:{home.gateway_port}/api/docs"):
        assert url in first.stdout
    # the first admin's one-time password, shown once: it logs in at the gateway (and must then be changed)
    (line,) = [ln for ln in first.stdout.splitlines() if "one-time password" in ln]
    password = line.rsplit(" ", 1)[1]
    login = urllib.request.Request(
        f"http://127.0.0.1:{home.gateway_port}/api/v1/auth/token", method="POST",
        data=urllib.parse.urlencode({"grant_type": "password", "username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(login, timeout=10) as resp:
        token = json.loads(resp.read())
    assert token["access_token"] and token["must_change_password"] is True
    assert (home.home / "secrets.enc.passphrase").stat().st_mode & 0o077 == 0  # generated, owner only

    status = tradeloop(home, "status", "--json")
    assert status.returncode == 0, status.stdout
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert set(rows) == {"postgres", "broker", "mlflow", "docs", "dagster-webserver", "dagster-daemon", "worker",
                         "feed", "gateway", "supervisor"}
    assert {row["state"] for row in rows.values()} == {"running"}
    assert all(isinstance(row["pid"], int) for row in rows.values())

    # the Dagster UI serves the `orchestration` code location, loaded without errors
    from deploy.stack.services import code_locations

    assert code_locations(f"http://127.0.0.1:{home.dagster_port}") == {"orchestration": "LOADED"}

    # a worker that crashes (SIGKILL: no chance to clean up) is started again by the supervisor and counted
    os.kill(rows["worker"]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        now = {row["name"]: row for row in json.loads(tradeloop(home, "status", "--json").stdout)}
        if now["worker"]["state"] == "running" and now["worker"]["restarts"] == 1:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"worker not restarted: {now['worker']}")
    assert now["worker"]["pid"] != rows["worker"]["pid"]
    rows["worker"] = now["worker"]
    with urllib.request.urlopen(f"http://127.0.0.1:{home.supervisor_port}/metrics", timeout=5) as resp:
        assert 'tradeloop_service_restarts_total{service="worker"} 1.0' in resp.read().decode()

    # a backfill submitted the way the UI does it is accepted by the daemon's queue (behind the cold start)
    backfill = tradeloop(home, "backfill", "--start", "2026-11-02", "--days", "1", "--symbol", "SOL/USDT",
                         "--no-wait", extra_env=AUTONOMY)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert "1 partitions (1 days x 1 symbols)" in backfill.stdout

    # no human action since `up`: the cold-start sensor backfilled, built features, trained and gated a model
    from deploy.stack import postgres

    monkeypatch.delenv("TRADELOOP_SECRETS_PASSPHRASE")  # this home's key file opens with the generated one
    url = postgres.url(home, home.pg_port)  # the superuser's, with the password `up` generated
    engine = sa.create_engine(url)
    deadline = time.monotonic() + 900
    decision = None
    while decision is None and time.monotonic() < deadline:
        with engine.connect() as conn:
            decision = conn.execute(sa.text("""SELECT action, reason FROM audit_log
                                               WHERE action IN ('promote', 'gate_reject') LIMIT 1""")).first()
        time.sleep(5)
    with engine.connect() as conn:
        days = conn.execute(sa.text("""SELECT count(DISTINCT (ts::date, symbol)) FROM market_data_clean
                                       WHERE ts >= current_date - 2 AND ts < current_date""")).scalar()
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO audit_log (event_id, actor, action, scope, reason)
            VALUES ('survives-restart', 'test', 'note', 'account:test', 'data must survive down/up')
        """))
    engine.dispose()
    assert decision is not None, "no gate decision within 15 minutes of a fresh start"
    assert decision.reason
    assert days == 4  # 2 days x 2 symbols, backfilled by the platform itself

    down = tradeloop(home, "down")
    assert down.returncode == 0, down.stderr
    stopped = tradeloop(home, "status", "--json")
    assert stopped.returncode == 3
    assert {row["state"] for row in json.loads(stopped.stdout)} == {"stopped"}
    for pid in (row["pid"] for row in rows.values()):
        assert not _alive(pid), f"pid {pid} still running after down"

    second = tradeloop(home, "up", extra_env=AUTONOMY)
    assert second.returncode == 0, second.stderr + second.stdout
    assert "one-time password" not in second.stdout and password not in second.stdout
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT reason FROM audit_log WHERE event_id = 'survives-restart'")).scalar()
    engine.dispose()
    assert reason == "data must survive down/up"


def test_port_taken_is_one_clear_line_and_stops_what_it_started(home):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", home.mlflow_port))
    blocker.listen()
    try:
        result = tradeloop(home, "up")
    finally:
        blocker.close()
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, result.stderr
    assert error_lines[0].startswith(f"error: mlflow: port {home.mlflow_port}")
    assert "mlflow.log" in error_lines[0]
    assert "Traceback" not in result.stderr
    # postgres and the broker had started; they were stopped again
    status = json.loads(tradeloop(home, "status", "--json").stdout)
    assert {row["state"] for row in status} == {"stopped"}


def test_missing_server_binaries_name_the_service(home):
    env = env_for(home)
    env["TRADELOOP_PG_BIN_DIR"] = "/nonexistent/pg/bin"
    result = subprocess.run([TRADELOOP, "up"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "error: postgres: no server binaries found" in result.stderr
    assert "Traceback" not in result.stderr


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("variable, value, message", [
    ("TRADELOOP_HISTORY_START", "yesterday", "TRADELOOP_HISTORY_START"),
    ("TRADELOOP_PG_PORT", "abc", "TRADELOOP_PG_PORT: Input should be a valid integer"),
    ("TRADELOOP_SYMBOLS", '["BTCUSDT"]', "unified BASE/QUOTE"),
    ("TRADELOOP_MODE", "yolo", "TRADELOOP_MODE: Input should be 'paper', 'sandbox' or 'live'"),
    ("TRADELOOP_MODE", "live", "TRADELOOP_MODE=live needs TRADELOOP_VENUE=binance|coinbase|ib and TRADELOOP_VENUE_KEY="),
])
def test_bad_settings_are_one_line_per_problem(home, variable, value, message):
    env = env_for(home)
    env[variable] = value
    result = subprocess.run([TRADELOOP, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
