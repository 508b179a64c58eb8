"""`python -m orchestration.gateway` as the stack runs it: a real uvicorn process on loopback, with TLS from
`tradeloop certs`."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time

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
