"""A dbt build of the execution-quality marts for some accounts only, into schemas of its own
(``<base>_staging``, ``<base>_marts``, dropped afterwards): the session's warehouse (analytics_*, built once
for the by-hand book) is never rebuilt under the other warehouse tests."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

# the execution marts and what they read (stg_orders, stg_parent_orders, stg_trades, stg_market_data_clean)
EXECUTION_MARTS = "+mart_execution_quality_by_algorithm"


@contextmanager
def execution_marts(engine: sa.Engine, pg_url: str, accounts: list[str]):
    """Build the execution marts for ``accounts`` (their dbt tests too); yields the marts' schema."""
    from assets.warehouse import DBT_PROJECT_DIR, run_dbt

    base = f"eq_{uuid.uuid4().hex[:8]}"
    target = f"target/test-{base}"
    # cautious: only tests whose every parent is built here (a test also reading positions is not)
    args = ["build", "--select", EXECUTION_MARTS, "--indirect-selection", "cautious",
            "--vars", json.dumps({"accounts": accounts}), "--target-path", target]
    try:
        started = time.monotonic()
        done = run_dbt(args, pg_url, env={"DBT_PG_SCHEMA": base})
        assert done.returncode == 0, f"dbt build failed in {time.monotonic() - started:.1f}s:\n{done.stdout[-6000:]}"
        results = json.loads((Path(DBT_PROJECT_DIR) / target / "run_results.json").read_text())["results"]
        built = {r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("model.")}
        assert {"mart_execution_quality", "stg_parent_orders"} <= built, built
        yield f"{base}_marts"
    finally:
        with engine.begin() as conn:
            for suffix in ("staging", "marts"):
                conn.execute(sa.text(f'drop schema if exists "{base}_{suffix}" cascade'))
        shutil.rmtree(Path(DBT_PROJECT_DIR) / target, ignore_errors=True)
