"""Dagster resources: connections to the platform's PostgreSQL (system of record)."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa


class PostgresResource(dg.ConfigurableResource):
    """The system of record. `url` defaults to DATABASE_URL, which `tradeloop up` sets."""

    url: str

    def engine(self) -> sa.Engine:
        return _engine(self.url)

    @contextmanager
    def begin(self):
        """A transaction: everything inside commits together or not at all (no half-written state)."""
        with self.engine().begin() as conn:
            yield conn


_ENGINES: dict[str, sa.Engine] = {}


def _engine(url: str) -> sa.Engine:
    # one pool per process: assets run many times in the same process under the daemon
    if url not in _ENGINES:
        _ENGINES[url] = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
    return _ENGINES[url]
