"""The gateway against the session's real PostgreSQL (tests/conftest.py), the real app through fastapi's TestClient
(httpx), the real secret provider (an encrypted key file in a temporary home).

Control actions leave the gateway as HTTP requests to the worker's /control/{action}; ``worker`` is a small HTTP
server on 127.0.0.1 standing in for the worker at that boundary (as tests/deploy/fake_vault.py does for Vault), so
a test can see exactly what the gateway sent."""

from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import make_settings

PASSWORD = "correct horse battery staple"
CONTROL_TOKEN = "test-control-token-" + "x" * 20
ROLE_NAMES = ("viewer", "trader", "risk_officer", "admin")


class RecordingWorker:
    """Answers POST /control/{action} like the worker (200 and a state) and GET /risk; keeps what it got."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path == "/risk":
                    return self._answer(200, {"account": "paper", "state": "ok"})
                self._answer(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                rec.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if self.headers.get("Authorization") != f"Bearer {CONTROL_TOKEN}":
                    return self._answer(401, {"error": "missing or wrong bearer token"})
                action = self.path.rsplit("/", 1)[-1]
                self._answer(200, {"ok": True, "action": action, "state": "halted", "event_id": "e-" + action})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="package")
def worker():
    w = RecordingWorker()
    yield w
    w.close()


@pytest.fixture(scope="package")
def gw_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gateway-home")


@pytest.fixture(scope="package", autouse=True)
def _passphrase():
    # the file key store's passphrase, as `up` hands it to the services it starts; package scope: the variable is
    # gone again when the tests of this folder are done (later folders must not inherit it)
    old = os.environ.get("TRADELOOP_SECRETS_PASSPHRASE")
    os.environ["TRADELOOP_SECRETS_PASSPHRASE"] = "gateway tests passphrase"
    yield
    if old is None:
        os.environ.pop("TRADELOOP_SECRETS_PASSPHRASE", None)
    else:
        os.environ["TRADELOOP_SECRETS_PASSPHRASE"] = old


def gateway_settings(home: Path, pg_url: str, worker_port: int, **overrides):
    values = {"secrets_backend": "file", "worker_port": worker_port,
              "control_token": CONTROL_TOKEN, "gateway_rate_per_min": 100_000,
              "gateway_login_rate_per_min": 100_000, **overrides}
    settings = make_settings(home, **values)
    # aliased fields (DATABASE_URL, MLFLOW_TRACKING_URI) are set after validation; port 9: nothing answers
    return settings.model_copy(update={"database_url": pg_url, "mlflow_tracking_uri": "http://127.0.0.1:9"})


@pytest.fixture(scope="package")
def settings(gw_home, pg_url, worker, _passphrase):
    return gateway_settings(gw_home, pg_url, worker.port)


def make_client(settings, engine):
    from fastapi.testclient import TestClient

    from orchestration.gateway.app import create_app

    return TestClient(create_app(settings, engine=engine), raise_server_exceptions=False)


@pytest.fixture(scope="package")
def client(settings, engine):
    with make_client(settings, engine) as c:
        yield c


@pytest.fixture(scope="package")
def people(engine) -> dict[str, str]:
    """One user per role (unique names for this session): role -> username."""
    from orchestration.gateway import users

    tag = uuid.uuid4().hex[:6]
    made = {}
    for role in ROLE_NAMES:
        name = f"{role.replace('_', '-')}-{tag}"
        users.add_user(engine, name, PASSWORD, role)
        made[role] = name
    return made


def login(client, username: str, password: str = PASSWORD, **extra):
    return client.post("/api/v1/auth/token", data={"grant_type": "password", "username": username,
                                                   "password": password, **extra})


@pytest.fixture(scope="package")
def tokens(client, people) -> dict[str, str]:
    """role -> a valid access token."""
    out = {}
    for role, name in people.items():
        resp = login(client, name)
        assert resp.status_code == 200, resp.text
        out[role] = resp.json()["access_token"]
    return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(engine, role: str, password: str = PASSWORD, **kw) -> str:
    from orchestration.gateway import users

    name = f"u-{uuid.uuid4().hex[:10]}"
    users.add_user(engine, name, password, role, **kw)
    return name
