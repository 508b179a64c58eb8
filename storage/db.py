"""Engines for the system of record: psycopg 3 through SQLAlchemy, whatever URL form the caller has."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

_SHARED: dict[str, sa.Engine] = {}


def psycopg_url(url: str) -> str:
    """``postgresql://`` or ``postgresql+<driver>://`` -> ``postgresql+psycopg://`` (the one driver)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]!r}")
    return "postgresql+psycopg://" + rest


def create_engine(url: str, **kw: Any) -> sa.Engine:
    """A new engine of its own (the caller disposes of it); pool connections are checked before use
    unless ``pool_pre_ping=False``."""
    return sa.create_engine(psycopg_url(url), **{"pool_pre_ping": True, **kw})


def engine(url: str) -> sa.Engine:
    """The process's shared engine for ``url``: callers that run many times (Dagster assets under the
    daemon, CLI commands, replays) share one small pool instead of opening one each."""
    eng = _SHARED.get(url)
    if eng is None:
        eng = _SHARED[url] = create_engine(url, pool_size=2, max_overflow=2)
    return eng


def ensure_schema(url: str, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS ``schema`` (a plain identifier) -- for a library that keeps its own
    tables apart from the platform's (Optuna's RDB storage)."""
    if not schema.isidentifier():
        raise ValueError(f"schema name {schema!r} is not a plain SQL identifier")
    eng = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except sa.exc.IntegrityError:
        pass  # two processes created it at the same moment: it exists, which is all we need
    finally:
        eng.dispose()


def ensure_databases(server_url: str, names: list[str]) -> list[str]:
    """CREATE DATABASE for each of ``names`` missing on the server (``server_url`` names an existing
    database to connect to, e.g. ``postgres``); returns the names created.  CREATE DATABASE cannot run in a
    transaction, hence AUTOCOMMIT."""
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise ValueError(f"database names {bad} are not plain SQL identifiers")
    eng = create_engine(server_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            existing = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
            created = [n for n in names if n not in existing]
            for name in created:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return created
    finally:
        eng.dispose()
