"""Engines for the system of record: psycopg 3 through SQLAlchemy, whatever URL form the caller has."""

from __future__ import annotations

import sqlalchemy as sa

_ENGINES: dict[tuple, sa.Engine] = {}


def psycopg_url(url: str) -> str:
    """``postgresql://`` or ``postgresql+<driver>://`` -> ``postgresql+psycopg://`` (the one driver)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]!r}")
    return "postgresql+psycopg://" + rest


def engine(url: str, *, pool_size: int = 2, max_overflow: int = 2, **kw) -> sa.Engine:
    """One pooled engine per (url, pool settings) in the process: callers that run many times (Dagster
    assets under the daemon, the stream's pollers) share its pool instead of opening one each."""
    key = (psycopg_url(url), pool_size, max_overflow, tuple(sorted(kw.items())))
    eng = _ENGINES.get(key)
    if eng is None:
        eng = _ENGINES[key] = sa.create_engine(key[0], pool_pre_ping=True, pool_size=pool_size,
                                               max_overflow=max_overflow, **kw)
    return eng


def dispose_all() -> None:
    """Close every pooled connection (tests, and a process that forks)."""
    while _ENGINES:
        _ENGINES.popitem()[1].dispose()
