"""The hot reads on the event loop: SQLAlchemy Core text statements run on a few psycopg AsyncConnections.

A sync endpoint costs two thread hops per request (to the thread pool and back), which cost more CPU than the
query itself. The statements stay ``sa.text`` with named parameters; SQLAlchemy compiles each once for the
psycopg dialect and psycopg runs it (``text`` binds have no type processing, so the rows are what the
SQLAlchemy path returned). Connections are in autocommit: each read is its own transaction, as a checked-out
SQLAlchemy connection that is closed after one statement. No ping before use: a connection found broken (the
database restarted) is replaced and the read, which changes nothing, is tried once more on a new one.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

import sqlalchemy as sa


class AsyncReads:
    def __init__(self, engine: sa.Engine, size: int = 4) -> None:
        self._dialect = engine.dialect
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[Any] = []
        self._open = 0
        self._available: asyncio.Condition | None = None

    @lru_cache(maxsize=256)  # noqa: B019 -- one per app, statements are module constants
    def _compiled(self, sql: str) -> tuple[str, tuple[str, ...]]:
        compiled = sa.text(sql).compile(dialect=self._dialect)
        return compiled.string, tuple(compiled.bind_names.values())

    def _bind(self) -> None:
        """Connections belong to one event loop (uvicorn has one; a test client may start another)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            for conn in self._idle:
                conn.pgconn.finish()  # the old loop is gone: close the socket without it
            self._loop, self._idle, self._open = loop, [], 0
            self._available = asyncio.Condition()

    async def _acquire(self):
        import psycopg

        self._bind()
        async with self._available:
            while not self._idle and self._open >= self._size:
                await self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except BaseException:
            await self._release(None)
            raise

    async def _release(self, conn) -> None:
        async with self._available:
            if conn is None or conn.closed or conn.broken:
                self._open -= 1
                if conn is not None and not conn.closed:
                    await conn.close()
            else:
                self._idle.append(conn)
            self._available.notify()

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of ``sql`` (sa.text syntax: ``:name`` parameters) as dicts, column name -> value."""
        import psycopg
        from psycopg.rows import dict_row

        statement, names = self._compiled(sql)
        values = {n: params[n] for n in names}
        for attempt in (1, 2):
            conn = await self._acquire()
            try:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(statement, values)
                return await cur.fetchall()
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
            finally:
                await self._release(conn)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for conn in self._idle:
            await conn.close()
        self._idle, self._open = [], 0
