"""The dbt warehouse (dbt_project/) as Dagster assets: every model is an asset downstream of the platform's
tables, and every dbt test is an asset check (dagster-dbt's default). `warehouse_build` runs `dbt build`.

The connection: dbt reads DBT_PG_* variables (dbt_project/profiles.yml); they are derived here from the
`db` resource's SQLAlchemy URL (DATABASE_URL), set only for the dbt process being started.
"""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from deploy.settings import REPO_ROOT
from assets.resources import PostgresResource

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# dagster-dbt runs `dbt` by name unless told; the venv's dbt sits next to this interpreter
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


class WarehouseError(ValueError):
    """The warehouse cannot run with the configuration given."""


def dbt_env(database_url: str) -> dict[str, str]:
    """DBT_PG_* variables for profiles.yml from a SQLAlchemy URL (postgresql+psycopg://user:pw@host:port/db)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise WarehouseError(f"DATABASE_URL is not a database URL: {exc}") from None
    if url.get_backend_name() != "postgresql":
        raise WarehouseError(f"the warehouse needs PostgreSQL; DATABASE_URL is a {url.get_backend_name()!r} URL")
    if not url.database:
        raise WarehouseError("DATABASE_URL names no database (expected .../dbname)")
    return {
        "DBT_PG_HOST": url.host or "127.0.0.1",
        "DBT_PG_PORT": str(url.port or 5432),
        "DBT_PG_USER": url.username or "postgres",
        "DBT_PG_PASSWORD": url.password or "",
        "DBT_PG_DBNAME": url.database,
    }


@contextmanager
def _environ(values: dict[str, str]):
    # DbtCliResource copies os.environ when it starts the dbt process and offers no other way in
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_dbt(args: list[str], database_url: str | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the dbt CLI on the warehouse project outside Dagster (parse, tests, operations); ``env``: more
    variables for the dbt process (e.g. DBT_PG_SCHEMA)."""
    env = {**os.environ, **(dbt_env(database_url) if database_url else {}), **(env or {}),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run(
        [DBT_EXECUTABLE, *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=DBT_PROJECT_DIR,
    )


def ensure_manifest() -> Path:
    """The manifest dagster-dbt builds the asset graph from: `dbt parse` (offline, no database) when a
    fresh clone has no target/ yet. prepare_if_dev() only acts under `dagster dev`, and the platform runs
    the webserver and daemon instead, hence this. Also when a model, macro, seed or the project file is newer
    than the manifest (a pull or an edit): a stale manifest names fewer models than `dbt build` runs."""
    import fcntl

    manifest = dbt_project.manifest_path
    sources = [DBT_PROJECT_DIR / "dbt_project.yml", *(f for d in ("models", "macros", "seeds", "tests")
                                                     for f in (DBT_PROJECT_DIR / d).rglob("*") if f.is_file())]

    def stale() -> bool:
        return not manifest.exists() or max(f.stat().st_mtime for f in sources) > manifest.stat().st_mtime

    manifest.parent.mkdir(parents=True, exist_ok=True)
    # several processes may import this at once (parallel test workers, services): one parses, the others wait
    # for it, then find its manifest fresh -- never one half-written
    with open(manifest.parent / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stale():
            done = run_dbt(["parse", "--quiet"])
            if done.returncode != 0 or not manifest.exists():
                raise WarehouseError(f"`dbt parse` of {DBT_PROJECT_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return manifest


class WarehouseTranslator(DagsterDbtTranslator):
    """Sources keep their dagster meta asset keys (market_data_clean -> ohlcv_clean); the rest of the
    platform's tables appear as ["platform", table]; models group as `warehouse`."""

    def get_group_name(self, dbt_resource_props):
        if dbt_resource_props["resource_type"] == "source":
            return None
        return "warehouse"


class WarehouseConfig(dg.Config):
    accounts: list[str] = []
    """Build the warehouse from these accounts only (tests, drills); empty = every account."""


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=WarehouseTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
)
def warehouse_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource, db: PostgresResource,
                         config: WarehouseConfig):
    args = ["build"]
    if config.accounts:
        args += ["--vars", json.dumps({"accounts": config.accounts})]
    with _environ(dbt_env(db.url)):
        invocation = dbt.cli(args, context=context)
    yield from invocation.stream()


def mart_key(model: str) -> dg.AssetKey:
    from dagster_dbt import get_asset_key_for_model

    return get_asset_key_for_model([warehouse_dbt_assets], model)


def dbt_resource() -> DbtCliResource:
    """The `dbt` resource warehouse_dbt_assets runs with."""
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)

