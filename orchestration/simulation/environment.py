"""Where a simulation keeps its state, apart from a running platform's.

* PostgreSQL: a database of its own, ``tradeloop_sim_<seed>``, created fresh (dropped first) on the
  server of DATABASE_URL, else on the embedded server if it is up, else on a temporary embedded server
  started under the simulation's directory (and stopped after).  Migrated like the platform's.
* MLflow: a local store (sqlite + artifact folder) under the simulation's directory, and a model name of
  its own, so the platform's registry and its champion are never touched.
* The settings the platform's code reads (``get_settings()``) are the deployment's with the simulation's
  home, database, registry, model name, symbols, seed and history start: every asset, strategy and sensor
  then runs unchanged against the simulation's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator, TextIO

from deploy.settings import Settings, get_settings


class SimulationError(RuntimeError):
    """A simulation cannot run as asked (one line naming the problem)."""


@dataclass(frozen=True)
class Server:
    url: str  # a database URL on the server (any database: the simulation uses its own)
    stop: object = None  # callable stopping a server started for this simulation, or None


def database_name(seed: int) -> str:
    return f"tradeloop_sim_{seed}"


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _reachable(url: str) -> bool:
    import sqlalchemy as sa

    from storage import db

    eng = db.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with eng.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        eng.dispose()


def open_server(settings: Settings, workdir: Path) -> Server:
    """DATABASE_URL's server, the embedded one if it answers, or a temporary one under ``workdir``."""
    from deploy.stack import postgres

    if settings.database_url:
        if not _reachable(settings.database_url):
            raise SimulationError(f"cannot reach PostgreSQL at DATABASE_URL ({settings.database_url.split('@')[-1]})")
        return Server(settings.database_url)
    from deploy.stack import pgroles
    from deploy.stack.process import StackError, free_port, stop

    try:
        embedded = postgres.url(settings, settings.pg_port)
    except StackError:
        embedded = None  # no password in the key store (never `up`, or no passphrase): not the embedded server
    if embedded and _reachable(embedded):
        return Server(embedded)
    tmp = Settings(_env_file=None, home=workdir / "pg", pg_port=free_port(), pg_bin_dir=settings.pg_bin_dir,
                   host=settings.host, pg_user=settings.pg_user, secrets_backend="file")
    # a throwaway server's passwords live in a throwaway key file, under a passphrase only this process knows
    import secrets

    from deploy.secrets import FileBackend, SecretProvider

    phrase = secrets.token_urlsafe(32)
    pgroles.use_provider(tmp, SecretProvider(FileBackend(tmp.home / "secrets.enc", passphrase=lambda new: phrase)))
    try:
        record = postgres.start(tmp, tmp.pg_port)
    except StackError as exc:
        raise SimulationError(f"no PostgreSQL for the simulation: {exc}") from None
    return Server(postgres.url(tmp, tmp.pg_port), stop=lambda: stop(record, tmp.run_dir))


def platform_database(settings: Settings) -> str:
    """The running platform's database (DATABASE_URL, else the embedded server's): where the stored history
    of ``--history stored`` is read from."""
    from deploy.stack.process import StackError

    try:
        url = settings.database_url_for("read")
    except StackError as exc:
        raise SimulationError(f"--history stored reads the platform's market_data_clean: {exc}") from None
    if not _reachable(url):
        raise SimulationError(f"--history stored reads the platform's market_data_clean, but its database at "
                              f"{url.split('@')[-1]} does not answer: start it (`tradeloop up`) or set DATABASE_URL")
    return url


def check_stored_history(url: str, exchange: str, symbols: list[str], first: date, last: date) -> None:
    """Every day of [first, last] has stored clean bars of every symbol; else one line naming what is missing
    and what is there."""
    import sqlalchemy as sa

    from storage import db
    from storage.market_data import clean_days

    engine = db.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            have = {sym: clean_days(conn, exchange, sym, first, last) for sym in symbols}
    finally:
        engine.dispose()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    missing = {sym: [d for d in days if d not in have[sym]] for sym in symbols}
    missing = {sym: ds for sym, ds in missing.items() if ds}
    if missing:
        shown = "; ".join(f"{sym}: {len(ds)} of {len(days)} days, first {ds[0]}" for sym, ds in missing.items())
        raise SimulationError(f"the stored history ({exchange} in {url.split('@')[-1]}) lacks days the simulation "
                              f"needs ({first}..{last}, warm-up included): {shown}. Backfill them "
                              f"(`tradeloop backfill --start {first} --days {len(days)}`) or choose stored days")


def fresh_database(server: Server, name: str) -> str:
    """Drop and create database ``name`` on the server, migrate it to head; returns its URL."""
    import sqlalchemy as sa

    from storage import db, migrations

    admin = db.create_engine(_with_database(server.url, "postgres"), poolclass=sa.pool.NullPool,
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.DBAPIError as exc:
        raise SimulationError(f"cannot create database {name!r} for the simulation: "
                              f"{str(exc.orig).strip().splitlines()[0]}") from None
    finally:
        admin.dispose()
    url = _with_database(server.url, name)
    migrations.upgrade(url)
    return url


def mlflow_store(workdir: Path) -> str:
    """A local MLflow store under ``workdir``; the platform's experiments exist there with their artifacts
    in the same folder (a sqlite store would otherwise put them under ./mlruns of the current directory)."""
    from mlflow import MlflowClient

    from ml.tuning import EXPERIMENT as TUNING

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("tradeloop-retrain", TUNING):  # ml.training.train_and_register's default experiment
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=(workdir / "mlartifacts" / name).as_uri())
    return uri


@contextlib.contextmanager
def simulation_settings(overrides: dict[str, str]) -> Iterator[Settings]:
    """The process's settings with ``overrides`` (environment variables) for the duration."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def overrides(*, home: Path, database_url: str, tracking_uri: str, model_name: str, symbols: list[str],
              seed: int, history_start: str, exchange: str = "sim") -> dict[str, str]:
    """``exchange``: the market's name (the sim's, or the stored history's, which the simulation replays)."""
    return {"TRADELOOP_HOME": str(home), "DATABASE_URL": database_url, "MLFLOW_TRACKING_URI": tracking_uri,
            "TRADELOOP_MODEL_NAME": model_name, "TRADELOOP_SYMBOLS": json.dumps(symbols),
            "TRADELOOP_SIM_SEED": str(seed), "TRADELOOP_HISTORY_START": history_start,
            "TRADELOOP_MARKET_SOURCE": exchange, "TRADELOOP_STREAM_EXCHANGE": exchange,
            # no tqdm progress bars from libraries (Great Expectations) on the terminal
            "TQDM_DISABLE": "1"}


def reset_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def output_to_log(log_file: Path) -> Iterator[TextIO]:
    """Library output (warnings, Dagster events, dbt's console, progress bars) goes to ``log_file``: file
    descriptors 1 and 2, Python's stdout and stderr and the root logger point there for the duration.
    Yields the terminal's stdout, for the progress lines and the timeline."""
    import logging
    import sys
    import warnings

    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    with open(log_file, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        handler = logging.StreamHandler(log)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
                warnings.simplefilter("default")
                logging.captureWarnings(True)
                yield terminal
        finally:
            logging.captureWarnings(False)
            root.removeHandler(handler)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()
