"""Session fixtures: a real PostgreSQL and a real Kafka-protocol broker, started by the project's own
stack code (deploy.stack) on free ports in a temporary home. No mocks of either."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path

import pytest

# Before any test module is collected (importing assets reads the settings): state of this test session
# lives in a temporary home, never in the repository's .tradeloop of a developer's running platform.
os.environ["TRADELOOP_HOME"] = tempfile.mkdtemp(prefix="tradeloop-test-")
for _name in ("DATABASE_URL", "KAFKA_BOOTSTRAP"):
    os.environ.pop(_name, None)
# the key file of the session's home holds the embedded PostgreSQL's generated passwords (deploy/stack/pgroles.py)
os.environ.setdefault("TRADELOOP_SECRETS_PASSPHRASE", "tradeloop-test-session-passphrase")

from deploy.settings import Settings, get_settings  # noqa: E402

get_settings.cache_clear()


def _partition_ports() -> None:
    """Under pytest-xdist (`make test` runs two workers) each worker hands out free ports from its own range,
    below the kernel's ephemeral ports (32768+) and above the platform's defaults: a port one worker picked and
    has not bound yet is never the other's pick. (Not bind(0) filtered by port parity: Linux gives bind(0) even
    ports only.)"""
    import random
    import socket

    from deploy.stack import process

    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
    if count < 2 or not worker.startswith("gw"):
        return
    span = 12000 // count
    low = 20000 + int(worker[2:]) * span
    given: set[int] = set()

    def free_port(host: str = "127.0.0.1") -> int:
        for _ in range(10_000):
            port = random.randrange(low, low + span)
            if port in given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            given.add(port)
            return port
        raise RuntimeError(f"no free port in {low}-{low + span - 1} for test worker {worker}")

    process.free_port = free_port


_partition_ports()


def pytest_configure(config):
    """As root, PostgreSQL runs as another user (deploy/stack/postgres.py), which must traverse the test's home;
    every new pytest session as root chmods /tmp/pytest-of-root back to 0700, cutting off the servers of any
    other session running beside it. A base folder of this session's own, outside it, is never touched."""
    if os.geteuid() == 0 and not config.option.basetemp and not os.environ.get("PYTEST_XDIST_WORKER"):
        config.option.basetemp = tempfile.mkdtemp(prefix="tradeloop-pytest-")


def pytest_collection_modifyitems(config, items):
    """The long end-to-end tests (marked slow) start first, spread over the xdist workers: `--dist worksteal`
    hands worker i the i-th contiguous share of this order, so each share begins with its part of the slow tests
    (run last, they would run one after another while the other worker idles)."""
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)))
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    ordered, remaining = [], len(items)
    for i in range(count):
        size = remaining // (count - i)  # the share worksteal's first distribution sends worker i
        mine = slow[i::count]
        take = max(0, size - len(mine))
        ordered += mine + rest[:take]
        rest = rest[take:]
        remaining -= size
    items[:] = ordered + rest


def make_settings(home: Path, **overrides) -> Settings:
    from deploy.stack.process import free_port

    ports = {
        "pg_port": free_port(), "broker_port": free_port(), "mlflow_port": free_port(),
        "dagster_port": free_port(), "worker_port": free_port(), "docs_port": free_port(),
        "supervisor_port": free_port(), "gateway_port": free_port(),
    }
    # _env_file=None: a developer's .env must not leak into the tests
    return Settings(_env_file=None, home=home, database_url=None, kafka_bootstrap=None, **{**ports, **overrides})


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    return make_settings(Path(os.environ["TRADELOOP_HOME"]))


@pytest.fixture(scope="session")
def pg_url(stack_settings: Settings):
    """URL of a real PostgreSQL with the schema migrated to head, as `up` does it (password authentication, a role
    per component: deploy/stack/pgroles.py): the superuser's, so that tests may do anything; a test of a
    component's privileges connects as its role (stack_settings.database_url_for)."""
    from deploy.stack import pgroles, postgres
    from deploy.stack.process import stop

    record = postgres.start(stack_settings, stack_settings.pg_port)
    url = postgres.url(stack_settings, stack_settings.pg_port)
    try:
        pgroles.migrate_and_grant(stack_settings)
        yield url
    finally:
        stop(record, stack_settings.run_dir, sig=signal.SIGINT)


@pytest.fixture(scope="session")
def mlflow_server(stack_settings: Settings, pg_url: str):
    """URL of a real MLflow tracking server (store in the test PostgreSQL's mlflow database), as `up` runs it:
    a server's REST registry checks more than a local sqlite store does."""
    from deploy.stack import services
    from deploy.stack.process import stop

    record = services.start_mlflow(stack_settings, pg_url, "")
    try:
        yield record.url
    finally:
        stop(record, stack_settings.run_dir)


@pytest.fixture(scope="session")
def engine(pg_url: str):
    import sqlalchemy as sa

    eng = sa.create_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_settings: Settings):
    """Bootstrap address of a real Tansu broker with the platform's topics created."""
    from deploy.stack import broker
    from deploy.stack.process import stop
    from streaming.topics import ensure_topics

    record = broker.start(stack_settings, stack_settings.broker_port)
    bootstrap = f"{stack_settings.host}:{stack_settings.broker_port}"
    try:
        asyncio.run(ensure_topics(bootstrap, stack_settings.topic_partitions))
        yield bootstrap
    finally:
        stop(record, stack_settings.run_dir)
