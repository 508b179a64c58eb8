"""`tradeloop up | down | status`: the whole embedded stack, in dependency order."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

from deploy.settings import REPO_ROOT, Settings
from deploy.stack import broker, pgroles, postgres, services
from deploy.stack.process import ServiceRecord, StackError, http_ok, port_in_use, stop

# start order; `down` goes in reverse
ORDER = ("postgres", "broker", "mlflow", "docs", "dagster-webserver", "dagster-daemon", "worker", "feed",
         "gateway", "supervisor")


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | stopped | external | unhealthy
    pid: int | None
    port: int | None
    url: str
    log: str
    restarts: int = 0  # restarts by the supervisor since it started


def _ports(settings: Settings) -> dict[str, int]:
    return {
        "postgres": settings.pg_port,
        "broker": settings.broker_port,
        "mlflow": settings.mlflow_port,
        "docs": settings.docs_port,
        "dagster-webserver": settings.dagster_port,
        "dagster-daemon": 0,
        "worker": settings.worker_port,
        "feed": 0,
        "gateway": settings.gateway_port,
        "supervisor": settings.supervisor_port,
    }


def _running(settings: Settings, name: str) -> ServiceRecord | None:
    record = ServiceRecord.load(settings.run_dir, name)
    return record if record is not None and record.process() is not None else None


def _bootstrap(settings: Settings) -> str:
    return settings.kafka_bootstrap or f"{settings.host}:{settings.broker_port}"


def up(settings: Settings, echo: Callable[[str], None] = print) -> dict[str, ServiceRecord]:
    """Start what is not running, in order; on any failure stop what this call started and raise."""
    settings.home.mkdir(parents=True, exist_ok=True)
    bootstrap = _bootstrap(settings)
    if not settings.database_url:
        pgroles.ensure_passwords(settings)  # generated on a first `up`; each service gets its role's URL
    started: list[ServiceRecord] = []
    records: dict[str, ServiceRecord] = {}

    def run(name: str, start: Callable[[], ServiceRecord]) -> None:
        existing = _running(settings, name)
        if existing is not None:
            echo(f"  {name:<18} already running (pid {existing.pid})")
            records[name] = existing
            return
        port = _ports(settings)[name]
        if port and port_in_use(settings.host, port):
            raise StackError(f"{name}: port {port} on {settings.host} is already in use by another process; "
                             f"stop it or choose another port (see README, Configuration); "
                             f"log: {settings.log_dir / (name + '.log')}")
        record = start()
        started.append(record)
        records[name] = record
        echo(f"  {name:<18} up (pid {record.pid}{f', port {record.port}' if record.port else ''})")

    try:
        start = starters(settings)
        if settings.database_url:
            echo(f"  {'postgres':<18} external ({_redact(settings.database_url)})")
        else:
            run("postgres", start["postgres"])
        _migrate(settings)
        if settings.kafka_bootstrap:
            echo(f"  {'broker':<18} external ({settings.kafka_bootstrap})")
        else:
            run("broker", start["broker"])
        _topics(bootstrap, settings)
        for name in ORDER[2:]:
            run(name, start[name])
    except BaseException:
        for record in reversed(started):
            stop(record, settings.run_dir, sig=_stop_signal(record.name))
        raise
    return records


def starters(settings: Settings) -> dict[str, Callable[[], ServiceRecord]]:
    """How each service starts (and waits until healthy): used by `up` and by the supervisor's restarts."""
    from deploy.stack import supervisor

    bootstrap = _bootstrap(settings)
    # each service connects as its own role (deploy/stack/pgroles.py); URLs are looked up when a service starts
    db = settings.database_url_for
    return {
        "postgres": lambda: postgres.start(settings, settings.pg_port),
        "broker": lambda: broker.start(settings, settings.broker_port),
        "mlflow": lambda: services.start_mlflow(settings, db("mlflow"), bootstrap),
        "docs": lambda: services.start_docs(settings),
        "dagster-webserver": lambda: services.start_dagster_webserver(settings, db("batch"), bootstrap,
                                                                      dagster_url=db("dagster")),
        "dagster-daemon": lambda: services.start_dagster_daemon(settings, db("batch"), bootstrap,
                                                                dagster_url=db("dagster")),
        "worker": lambda: services.start_worker(settings, db("stream"), bootstrap),
        "feed": lambda: services.start_feed(settings, db("read"), bootstrap),
        "gateway": lambda: services.start_gateway(settings, db("gateway"), bootstrap),
        "supervisor": lambda: supervisor.start(settings),
    }


def _migrate(settings: Settings) -> None:
    """The schema at head: as the migrate role on the embedded server (then its roles' grants), as given on an
    external DATABASE_URL."""
    from deploy import redaction
    from storage import migrations

    try:
        if settings.database_url:
            migrations.upgrade(settings.database_url)
        else:
            pgroles.migrate_and_grant(settings)
    except StackError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here is reported as one line
        raise StackError(f"schema: migrations failed: {redaction.scrub_exception(exc)}") from None


def _topics(bootstrap: str, settings: Settings) -> None:
    """The stream's topics, prefixed and with one partition count, before the worker subscribes.  Run
    as the stream's own command in a process: the stack needs no streaming code, only its interface."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "streaming.topics", "--bootstrap", bootstrap,
            "--partitions", str(settings.topic_partitions), "--prefix", settings.topic_prefix]
    try:
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"broker: could not create topics on {bootstrap}: no answer in 120 s") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise StackError(f"broker: could not create topics on {bootstrap}: {reason}")


def _stop_signal(name: str) -> int:
    return signal.SIGINT if name == "postgres" else signal.SIGTERM


# `down` stops each wave in parallel, waves in order: the clients first, then the broker, then the database
# the supervisor goes first, so nothing is started again while the rest stops
DOWN_WAVES = (("supervisor",), ("feed", "gateway"), ("worker", "dagster-daemon", "dagster-webserver", "mlflow", "docs"), ("broker",),
              ("postgres",))


def down(settings: Settings, echo: Callable[[str], None] = print) -> list[str]:
    """Stop every service we started (clients before the servers they use); data stays."""
    from concurrent.futures import ThreadPoolExecutor

    stopped = []
    for wave in DOWN_WAVES:
        records = [r for r in (ServiceRecord.load(settings.run_dir, name) for name in wave) if r is not None]
        with ThreadPoolExecutor(max_workers=len(records) or 1) as pool:
            results = list(pool.map(lambda r: stop(r, settings.run_dir, sig=_stop_signal(r.name)), records))
        for record, was_running in zip(records, results):
            if was_running:
                stopped.append(record.name)
                echo(f"  {record.name:<18} stopped")
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    from deploy.stack.supervisor import read_state

    supervised = read_state(settings.run_dir)
    result = []
    for name in ORDER:
        if name == "postgres" and settings.database_url:
            result.append(ServiceStatus(name, "external", None, None, _redact(settings.database_url), ""))
            continue
        if name == "broker" and settings.kafka_bootstrap:
            result.append(ServiceStatus(name, "external", None, None, settings.kafka_bootstrap, ""))
            continue
        record = ServiceRecord.load(settings.run_dir, name)
        health = supervised.get(name, {})
        restarts = int(health.get("restarts", 0))
        if record is None or record.process() is None:
            # a record without a process: crashed; `restarting` while the supervisor is on it
            state = "stopped"
            if record is not None and _running(settings, "supervisor") is not None:
                state = "failed" if health.get("gave_up") else "restarting"
            result.append(ServiceStatus(name, state, None, None, "", record.log if record else "", restarts))
            continue
        healthy = _healthy(settings, record)
        result.append(ServiceStatus(name, "running" if healthy else "unhealthy", record.pid,
                                    record.port or None, record.url, record.log, restarts))
    return result


def _healthy(settings: Settings, record: ServiceRecord) -> bool:
    checks = {
        "postgres": lambda: port_in_use(settings.host, record.port),
        "broker": lambda: port_in_use(settings.host, record.port),
        "mlflow": lambda: http_ok(f"{record.url}/health"),
        "docs": lambda: http_ok(f"{record.url}/"),
        "dagster-webserver": lambda: http_ok(f"{record.url}/server_info"),
        "dagster-daemon": lambda: True,  # alive is all we can ask of it cheaply
        "worker": lambda: http_ok(f"{record.url}/health"),
        "feed": lambda: True,  # alive is its health; it exits when it cannot publish
        "gateway": lambda: services.gateway_ok(settings),
        "supervisor": lambda: http_ok(f"{record.url}/metrics"),
    }
    return checks[record.name]()


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never echo a credential, even from a malformed URL
        return "<unparseable url>"
