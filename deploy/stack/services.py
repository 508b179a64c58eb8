"""MLflow, Dagster (webserver + daemon) and the Faust worker as managed processes."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path

from deploy.settings import REPO_ROOT, Settings
from deploy.stack.process import ServiceRecord, StackError, http_ok, log_since_start, spawn, wait_healthy

BIN = Path(sys.executable).parent  # the venv's bin: mlflow, dagster-webserver, dbt, faust live here


def _env(settings: Settings, pg_url: str, bootstrap: str, dagster_url: str | None = None) -> dict[str, str]:
    """The service's environment. ``pg_url`` is the URL of the service's own database role (settings.
    database_url_for), ``dagster_url`` Dagster's instance storage (default: the same role, database dagster).
    URLs with passwords go to children through the environment (readable by this user only), never argv."""
    import os

    return {
        # dagster-dbt finds the `dbt` executable on PATH
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TRADELOOP_HOME": str(settings.home),
        "DATABASE_URL": pg_url,
        "KAFKA_BOOTSTRAP": bootstrap,
        "MLFLOW_TRACKING_URI": f"http://{settings.host}:{settings.mlflow_port}",
        "DAGSTER_HOME": str(dagster_home(settings)),
        "TRADELOOP_DAGSTER_PG_URL": _with_database(dagster_url or pg_url, "dagster", driver="postgresql+psycopg2"),
        "PYTHONUNBUFFERED": "1",
    }


def _with_database(pg_url: str, database: str, driver: str = "postgresql+psycopg") -> str:
    """Same server, another database. Dagster gets psycopg2: its storage code is written for that driver."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(database=database, drivername=driver)
    return url.render_as_string(hide_password=False)


def dagster_home(settings: Settings) -> Path:
    return settings.home / "dagster"


def start_mlflow(settings: Settings, pg_url: str, bootstrap: str) -> ServiceRecord:
    artifacts = settings.home / "mlflow" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    port = settings.mlflow_port
    url = f"http://{settings.host}:{port}"
    # the store's URL (with its password) through the environment: a command line is visible to every user
    argv = [
        str(BIN / "mlflow"), "server",
        "--artifacts-destination", str(artifacts),
        "--host", settings.host, "--port", str(port), "--workers", "1",
    ]
    env = {**_env(settings, pg_url, bootstrap), "MLFLOW_BACKEND_STORE_URI": _with_database(pg_url, "mlflow")}
    record = spawn("mlflow", argv, port=port, url=url, log_dir=settings.log_dir, run_dir=settings.run_dir,
                   env=env)
    wait_healthy(record, lambda: http_ok(f"{url}/health"), settings.start_timeout_s)
    return record


def _prepare_dagster_home(settings: Settings) -> Path:
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


def start_dagster_webserver(settings: Settings, pg_url: str, bootstrap: str, dagster_url: str | None = None
                            ) -> ServiceRecord:
    _prepare_dagster_home(settings)
    port = settings.dagster_port
    url = f"http://{settings.host}:{port}"
    argv = [str(BIN / "dagster-webserver"), "-h", settings.host, "-p", str(port),
            "-w", str(REPO_ROOT / "workspace.yaml")]
    record = spawn("dagster-webserver", argv, port=port, url=url, log_dir=settings.log_dir,
                   run_dir=settings.run_dir, env=_env(settings, pg_url, bootstrap, dagster_url), cwd=REPO_ROOT)
    wait_healthy(record, lambda: http_ok(f"{url}/server_info"), settings.start_timeout_s)
    _check_code_location(record, url)
    return record


def code_locations(url: str) -> dict[str, str]:
    """{location name: "LOADED" or the load error's first line} as the Dagster UI sees them."""
    query = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    req = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        data = json.loads(resp.read())["data"]["workspaceOrError"]
    result = {}
    for entry in data.get("locationEntries", []):
        error = entry.get("locationOrLoadError") or {}
        if error.get("__typename") == "PythonError":
            result[entry["name"]] = error["message"].strip().splitlines()[0]
        else:
            result[entry["name"]] = entry["loadStatus"]
    return result


def _check_code_location(record: ServiceRecord, url: str) -> None:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        locations = code_locations(url)
        if locations.get("orchestration") == "LOADED":
            return
        if locations.get("orchestration") not in (None, "LOADING"):
            raise StackError(f"dagster-webserver: code location 'orchestration' failed to load: "
                             f"{locations['orchestration']}; see {record.log}")
        time.sleep(0.5)
    raise StackError(f"dagster-webserver: code location 'orchestration' did not load; see {record.log}")


def start_dagster_daemon(settings: Settings, pg_url: str, bootstrap: str, dagster_url: str | None = None
                         ) -> ServiceRecord:
    _prepare_dagster_home(settings)
    argv = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")]
    record = spawn("dagster-daemon", argv, port=0, url="", log_dir=settings.log_dir,
                   run_dir=settings.run_dir, env=_env(settings, pg_url, bootstrap, dagster_url), cwd=REPO_ROOT)
    wait_healthy(record, lambda: _daemon_heartbeat(record), settings.start_timeout_s)
    return record


def _daemon_heartbeat(record: ServiceRecord) -> bool:
    # the daemon logs this once its daemons (scheduler, sensors, run queue) have started
    return "Instance is configured with the following daemons" in log_since_start(record)


def start_worker(settings: Settings, pg_url: str, bootstrap: str) -> ServiceRecord:
    port = settings.worker_port
    url = f"http://{settings.host}:{port}"
    argv = [str(BIN / "faust"), "-A", "streaming.app", "worker", "-l", "info",
            "--web-host", settings.host, "--web-port", str(port)]
    record = spawn("worker", argv, port=port, url=url, log_dir=settings.log_dir, run_dir=settings.run_dir,
                   env=_env(settings, pg_url, bootstrap), cwd=REPO_ROOT)
    wait_healthy(record, lambda: http_ok(f"{url}/ready"), settings.start_timeout_s)
    return record


def start_gateway(settings: Settings, pg_url: str, bootstrap: str) -> ServiceRecord:
    """The API gateway (orchestration/gateway): the one authenticated door for people and programs."""
    port = settings.gateway_port
    url = settings.gateway_url
    argv = [sys.executable, "-m", "orchestration.gateway"]
    record = spawn("gateway", argv, port=port, url=url, log_dir=settings.log_dir, run_dir=settings.run_dir,
                   env=_env(settings, pg_url, bootstrap), cwd=REPO_ROOT)
    wait_healthy(record, lambda: gateway_ok(settings), settings.start_timeout_s)
    return record


def gateway_ok(settings: Settings) -> bool:
    if not settings.gateway_url.startswith("https"):
        return http_ok(f"{settings.gateway_url}/api/v1/health")
    import ssl

    # our own certificate (maybe self-signed by `tradeloop certs`): the health probe checks liveness, not identity
    context = ssl.create_default_context(cafile=str(settings.tls_cert_file))
    context.check_hostname = False
    try:
        with urllib.request.urlopen(f"{settings.gateway_url}/api/v1/health", timeout=1.0,  # noqa: S310
                                    context=context) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def start_docs(settings: Settings) -> ServiceRecord:
    """A static file server for the site: Data Docs and reports, linked from Dagster asset metadata."""
    settings.site_dir.mkdir(parents=True, exist_ok=True)
    port = settings.docs_port
    url = settings.docs_url
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", settings.host,
            "--directory", str(settings.site_dir)]
    record = spawn("docs", argv, port=port, url=url, log_dir=settings.log_dir, run_dir=settings.run_dir)
    wait_healthy(record, lambda: http_ok(f"{url}/"), settings.start_timeout_s)
    return record


def start_feed(settings: Settings, pg_url: str, bootstrap: str) -> ServiceRecord:
    """The market data producer for the stream: the sim venue in real time (24/7 paper trading)."""
    argv = [sys.executable, "-m", "streaming.producers", "--bootstrap", bootstrap, "sim"]
    record = spawn("feed", argv, port=0, url="", log_dir=settings.log_dir, run_dir=settings.run_dir,
                   env=_env(settings, pg_url, bootstrap), cwd=REPO_ROOT)
    # healthy once it has published; a producer that cannot reach the broker exits and says why
    wait_healthy(record, lambda: "published" in log_since_start(record) or _alive_for(record, 5.0),
                 settings.start_timeout_s)
    return record


def _alive_for(record: ServiceRecord, seconds: float) -> bool:
    import time

    return record.process() is not None and time.time() - record.started_at >= seconds
