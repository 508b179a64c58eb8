"""The warehouse as the batch jobs build it on the embedded server: the whole dbt project run by the batch role
(deploy/stack/pgroles.py) into schemas of its own, which reporting reads and the stream's role does not."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import sqlalchemy as sa

from tests.assets.warehouse.conftest import DBT_VARS, insert_book


def test_dbt_builds_the_warehouse_as_the_batch_role(stack_settings, engine, pg_url):
    from assets.warehouse import DBT_PROJECT_DIR, run_dbt

    insert_book(engine)
    base, target = f"roles_{uuid.uuid4().hex[:8]}", f"target/test-roles-{uuid.uuid4().hex[:8]}"
    urls = {c: stack_settings.database_url_for(c) for c in ("batch", "read", "stream")}
    try:
        done = run_dbt(["build", "--vars", DBT_VARS, "--target-path", target], urls["batch"],
                       env={"DBT_PG_SCHEMA": base})
        assert done.returncode == 0, done.stdout[-6000:]
        results = json.loads((Path(DBT_PROJECT_DIR) / target / "run_results.json").read_text())["results"]
        assert results and all(r["status"] in ("success", "pass") for r in results)
        with engine.connect() as conn:
            owners = set(conn.execute(sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN "
                                              "(:s, :m)"), {"s": f"{base}_staging", "m": f"{base}_marts"}).scalars())
        assert owners == {"tradeloop_batch"}
        read = sa.create_engine(urls["read"], poolclass=sa.pool.NullPool)
        with read.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {base}_marts.mart_daily_pnl")).scalar() > 0
        read.dispose()
        stream = sa.create_engine(urls["stream"], poolclass=sa.pool.NullPool)
        with stream.connect() as conn:
            try:
                conn.execute(sa.text(f"SELECT count(*) FROM {base}_marts.mart_daily_pnl"))
                raise AssertionError("the stream's role read a mart")
            except sa.exc.ProgrammingError as exc:
                assert "permission denied" in str(exc.orig)
        stream.dispose()
    finally:
        with engine.begin() as conn:
            for suffix in ("staging", "marts"):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{base}_{suffix}" CASCADE'))
        shutil.rmtree(Path(DBT_PROJECT_DIR) / target, ignore_errors=True)
