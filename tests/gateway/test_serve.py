"""`python -m orchestration.gateway` as the stack runs it: a real uvicorn process on loopback, with TLS from
`tradeloop certs`."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.settings import REPO_ROOT
from tests.gateway.conftest import PASSWORD

pytestmark = pytest.mark.timeout(90)


def test_the_gateway_serves_https_with_a_lab_certificate(pg_url, gw_home, people, tmp_path):
    from click.testing import CliRunner

    from deploy.stack.process import free_port
    from orchestration.cli.certs import certs

    made = CliRunner().invoke(certs, ["--out", str(tmp_path), "--host", "127.0.0.1"])
    assert made.exit_code == 0, made.output
    cert, key = tmp_path / "gateway.crt", tmp_path / "gateway.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    again = CliRunner().invoke(certs, ["--out", str(tmp_path)])
    assert again.exit_code == 1 and "--force" in again.output

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
    env.update(TRADELOOP_HOME=str(gw_home), DATABASE_URL=pg_url, TRADELOOP_GATEWAY_PORT=str(port),
               TRADELOOP_TLS_CERT_FILE=str(cert), TRADELOOP_TLS_KEY_FILE=str(key), TRADELOOP_SECRETS_BACKEND="file",
               TRADELOOP_SECRETS_PASSPHRASE=os.environ["TRADELOOP_SECRETS_PASSPHRASE"], PYTHONPATH=str(REPO_ROOT))
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.gateway"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/api/v1/health", verify=ctx, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
                time.sleep(0.3)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert health.headers["strict-transport-security"].startswith("max-age=")
        assert "server" not in health.headers  # no software banner
        token = httpx.post(url + "/api/v1/auth/token", verify=ctx, data={
            "grant_type": "password", "username": people["viewer"], "password": PASSWORD})
        assert token.status_code == 200
        me = httpx.get(url + "/api/v1/auth/me", verify=ctx,
                       headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        assert me.json()["subject"] == people["viewer"]
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port gets nowhere
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(20)
    assert PASSWORD not in (tmp_path / "gateway.log").read_text()


def test_the_cli_kill_switch_logs_in_at_the_gateway_which_checks_the_role(pg_url, gw_home, people, worker,
                                                                          tmp_path):
    """`tradeloop kill-switch` and `resume` are gateway clients: a risk officer's reach the worker signed for that
    user; a viewer's are refused with the gateway's reason; without credentials nothing is sent."""
    from deploy.stack.process import free_port
    from deploy.secrets import control_signing_key
    from streaming.signing import NonceCache, verify
    from tests.gateway.conftest import CONTROL_TOKEN, gateway_settings

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
    env.update(TRADELOOP_HOME=str(gw_home), DATABASE_URL=pg_url, TRADELOOP_GATEWAY_PORT=str(port),
               TRADELOOP_WORKER_PORT=str(worker.port), TRADELOOP_CONTROL_TOKEN=CONTROL_TOKEN,
               TRADELOOP_SECRETS_BACKEND="file", PYTHONPATH=str(REPO_ROOT),
               TRADELOOP_SECRETS_PASSPHRASE=os.environ["TRADELOOP_SECRETS_PASSPHRASE"])
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.gateway"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    tradeloop = [str(Path(sys.executable).parent / "tradeloop")]

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(tradeloop + list(args), env={**env, **extra}, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
                time.sleep(0.3)
        n = len(worker.requests)
        nobody = cli("kill-switch")
        assert nobody.returncode == 1 and "TRADELOOP_API_CLIENT_ID" in nobody.stderr, nobody.stderr
        viewer = cli("kill-switch", TRADELOOP_USERNAME=people["viewer"], TRADELOOP_PASSWORD=PASSWORD)
        assert viewer.returncode == 1 and "403" in viewer.stderr and "needs scope risk" in viewer.stderr, viewer.stderr
        assert "Traceback" not in viewer.stderr
        wrong = cli("kill-switch", TRADELOOP_USERNAME=people["risk_officer"], TRADELOOP_PASSWORD="not it")
        assert wrong.returncode == 1 and "400" in wrong.stderr and "invalid_grant" in wrong.stderr, wrong.stderr
        assert len(worker.requests) == n  # nothing reached the worker

        officer = cli("kill-switch", "--flatten", "--reason", "cli drill",
                      TRADELOOP_USERNAME=people["risk_officer"], TRADELOOP_PASSWORD=PASSWORD)
        assert officer.returncode == 0 and "trading state: halted" in officer.stdout, officer.stderr
        sent = worker.requests[-1]
        assert sent["path"] == "/control/kill_switch"
        settings = gateway_settings(gw_home, pg_url, worker.port)
        kid, key = control_signing_key(settings, create=False)
        verified = verify(sent["body"], {kid: key}, now_ns=time.time_ns(), max_age_s=60,
                          seen=NonceCache())
        assert verified.identity == people["risk_officer"] and verified.body["flatten"] is True
        assert verified.body["reason"] == "cli drill"
        back = cli("resume", TRADELOOP_USERNAME=people["risk_officer"], TRADELOOP_PASSWORD=PASSWORD)
        assert back.returncode == 0 and worker.requests[-1]["path"] == "/control/resume", back.stderr
    finally:
        proc.terminate()
        proc.wait(20)
    assert PASSWORD not in (tmp_path / "gateway.log").read_text()
