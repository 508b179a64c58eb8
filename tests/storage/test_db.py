"""storage.db: one driver (psycopg 3) whatever the URL says."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import db


@pytest.mark.parametrize("url", ["postgresql://u@h:5/d", "postgresql+psycopg2://u@h:5/d", "postgres://u@h:5/d",
                                 "postgresql+psycopg://u@h:5/d"])
def test_every_postgres_url_gets_psycopg3(url):
    assert db.psycopg_url(url) == "postgresql+psycopg://u@h:5/d"


def test_a_url_of_another_database_is_refused_without_its_password():
    with pytest.raises(ValueError, match="not a PostgreSQL URL") as exc:
        db.psycopg_url("mysql://user:secret@h/d")
    assert "secret" not in str(exc.value)


def test_shared_engine_per_url_and_schema_creation(pg_url):
    eng = db.engine(pg_url)
    assert db.engine(pg_url) is eng and eng.dialect.driver == "psycopg"
    db.ensure_schema(pg_url, "st_scratch")
    db.ensure_schema(pg_url, "st_scratch")  # again: nothing to do
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regnamespace('st_scratch') IS NOT NULL")).scalar()
    with pytest.raises(ValueError, match="identifier"):
        db.ensure_schema(pg_url, 'x"; DROP TABLE trades; --')


def test_missing_databases_are_created_once(pg_url):
    import uuid

    name = f"st_db_{uuid.uuid4().hex[:8]}"
    server = pg_url.rsplit("/", 1)[0] + "/postgres"
    try:
        assert db.ensure_databases(server, [name, "tradeloop"]) == [name]  # tradeloop exists already
        assert db.ensure_databases(server, [name]) == []
    finally:
        eng = db.create_engine(server, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        eng.dispose()
    with pytest.raises(ValueError, match="identifier"):
        db.ensure_databases(server, ['x"; DROP DATABASE tradeloop; --'])
