"""Data lifecycle of the time-series tables: partitions kept ahead of time, and retention that drops whole
partitions (native range partitioning) or whole chunks (TimescaleDB hypertables) -- never rows one by one.

A partition or chunk is dropped only when its whole range ends at or before the cutoff, so retention keeps at
least ``days`` of data (up to one partition more: a month natively, 7 days with TimescaleDB).  The default
partition of a natively partitioned table is never dropped: it holds rows of months that had no partition
yet, which ``tradeloop_ensure_partitions`` moves out when their month's partition is created.

Trades, orders, positions and the audit log have no retention here: a worker rebuilds its positions from every
fill, and the audit log is the record of decisions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from storage.stream import PARTITION_AHEAD_NS, ts_of, write_audit
from trading.records import stable_id

# every time-series table: monthly range partitions natively, hypertables with TimescaleDB
TIMESERIES = ("market_data", "market_data_clean", "trades", "risk_metrics", "audit_log", "signals")

# what a retention setting covers: its name (TRADELOOP_RETENTION_<NAME>_DAYS) -> tables
RETENTION_TABLES: dict[str, tuple[str, ...]] = {
    "bars": ("market_data",),  # raw bars: the batch ohlcv layer and the bars the stream records
    "clean_bars": ("market_data_clean",),  # the historical store that training, VaR and warm-up read
    "signals": ("signals",),
    "risk_metrics": ("risk_metrics",),
}

LOCK_TIMEOUT = "5s"  # a drop waits this long for the stream's writes, then fails (next run retries)


@dataclass(frozen=True)
class Dropped:
    """One partition or chunk that retention dropped."""

    table: str
    name: str
    kind: str  # "partition" or "chunk"
    range_start: datetime | None
    range_end: datetime
    rows: int


def is_hypertable(conn: sa.Connection, table: str) -> bool:
    if not conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar():
        return False
    return bool(conn.execute(sa.text("SELECT 1 FROM timescaledb_information.hypertables "
                                     "WHERE hypertable_name = :t"), {"t": table}).scalar())


def ensure_ahead(conn: sa.Connection, now_ns: int, tables: tuple[str, ...] = TIMESERIES) -> dict[str, int]:
    """This month's and next month's partitions of ``tables`` (idempotent; nothing to do on hypertables,
    whose chunks TimescaleDB creates on insert).  Returns the partitions created, by table."""
    created = {}
    for table in tables:
        created[table] = int(conn.execute(sa.text("SELECT tradeloop_ensure_partitions(:t, :a, :b)"), {
            "t": table, "a": ts_of(now_ns), "b": ts_of(now_ns + PARTITION_AHEAD_NS)}).scalar())
    return created


def adopt_default_rows(conn: sa.Connection, tables: tuple[str, ...] = TIMESERIES) -> dict[str, int]:
    """Give every month that has rows in a default partition its own partition (the rows move there), so that
    retention can later drop them with their month.  Returns the partitions created, by table."""
    created = {}
    for table in tables:
        if conn.execute(sa.text("SELECT to_regclass(:d)"), {"d": f"{table}_default"}).scalar() is None:
            continue  # a hypertable
        months = conn.execute(sa.text(f"SELECT DISTINCT date_trunc('month', ts, 'UTC') FROM \"{table}_default\"")).all()
        created[table] = 0
        for (month,) in months:
            created[table] += int(conn.execute(sa.text("SELECT tradeloop_ensure_partitions(:t, :m, :m)"),
                                               {"t": table, "m": month}).scalar())
    return created


def _partitions(conn: sa.Connection, table: str) -> list[tuple[str, datetime | None, datetime]]:
    """(name, start, end) of the range partitions of ``table``; the default partition is not listed.
    The bounds are parsed in SQL from the partition bound text, in the same session that printed them."""
    rows = conn.execute(sa.text("""
        SELECT c.relname,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = CAST(:t AS regclass) AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
        ORDER BY 3"""), {"t": table}).all()
    return [(r[0], r[1], r[2]) for r in rows if r[2] is not None]


def drop_older_than(conn: sa.Connection, table: str, cutoff: datetime) -> list[Dropped]:
    """Drop the partitions (or chunks) of ``table`` whose whole range ends at or before ``cutoff``, in the
    caller's transaction.  Returns what was dropped, oldest first."""
    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    dropped: list[Dropped] = []
    if is_hypertable(conn, table):
        chunks = conn.execute(sa.text("""
            SELECT chunk_schema, chunk_name, range_start, range_end FROM timescaledb_information.chunks
            WHERE hypertable_name = :t AND range_end <= :c ORDER BY range_end"""), {"t": table, "c": cutoff}).all()
        for schema, name, start, end in chunks:
            rows = conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{name}"')).scalar()
            dropped.append(Dropped(table, f"{schema}.{name}", "chunk", start, end, int(rows)))
        if chunks:
            # drop_chunks drops exactly the chunks whose range ends before or at older_than; a role that does not
            # own the hypertable (the batch jobs') calls it through the owner's function (deploy/stack/pgroles.py)
            drop = ("SELECT tradeloop_drop_chunks(:t, :c)" if _through_owner(conn, table, "tradeloop_drop_chunks(text,"
                    "timestamptz)") else "SELECT drop_chunks(CAST(:t AS regclass), older_than => :c)")
            gone = set(conn.execute(sa.text(drop), {"t": table, "c": cutoff}).scalars())
            missing = {d.name for d in dropped} - {g.replace('"', "") for g in gone}
            if missing:
                raise RuntimeError(f"drop_chunks on {table} left {sorted(missing)} in place")
        return dropped
    # a role that does not own the table (the batch jobs' on the embedded server) drops through the owner's
    # function, which allows only month partitions of the tables with retention (deploy/stack/pgroles.py)
    by_owner = _through_owner(conn, table, "tradeloop_drop_partition(text,text)")
    for name, start, end in _partitions(conn, table):
        if end > cutoff:
            break
        rows = conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar()
        if by_owner:
            conn.execute(sa.text("SELECT tradeloop_drop_partition(:t, :p)"), {"t": table, "p": name})
        else:
            conn.execute(sa.text(f'ALTER TABLE "{table}" DETACH PARTITION "{name}"'))
            conn.execute(sa.text(f'DROP TABLE "{name}"'))
        dropped.append(Dropped(table, name, "partition", start, end, int(rows)))
    return dropped


def _through_owner(conn: sa.Connection, table: str, function: str) -> bool:
    """Whether this role must drop through the owner's ``function``: it exists and we do not own ``table``."""
    return bool(conn.execute(sa.text(
        "SELECT to_regprocedure(:f) IS NOT NULL AND NOT pg_has_role(current_user,"
        " (SELECT relowner FROM pg_class WHERE oid = CAST(:t AS regclass)), 'USAGE')"), {"f": function, "t": table}
    ).scalar())


def check_retention(retention_days: dict[str, int | None]) -> dict[str, int]:
    """The retention in force, by name: 0 or None (keep forever) left out; anything but a whole number of
    days >= 0 of a known name refused with one line."""
    unknown = sorted(set(retention_days) - set(RETENTION_TABLES))
    if unknown:
        raise ValueError(f"retention: unknown data kinds {unknown}; known: {sorted(RETENTION_TABLES)}")
    out = {}
    for name, days in retention_days.items():
        if days is None or days == 0:
            continue
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError(f"retention of {name}: {days!r} is not a whole number of days >= 0 (0 = keep forever)")
        out[name] = days
    return out


def apply_retention(conn: sa.Connection, retention_days: dict[str, int | None], now: datetime,
                    actor: str = "maintenance") -> list[Dropped]:
    """Drop what each data kind's retention no longer keeps, in the caller's transaction; when anything was
    dropped, one audit_log row (action ``retention_drop``) lists it."""
    if now.tzinfo is None:
        raise ValueError("apply_retention: `now` must be timezone-aware")
    keep = check_retention(retention_days)
    dropped: list[Dropped] = []
    cutoffs = {}
    for name, days in sorted(keep.items()):
        cutoff = now - timedelta(days=days)
        cutoffs[name] = cutoff.isoformat()
        for table in RETENTION_TABLES[name]:
            dropped += drop_older_than(conn, table, cutoff)
    if dropped:
        ts_ns = int(now.timestamp() * 1e9)
        details = {"retention_days": keep, "cutoffs": cutoffs,
                   "dropped": [{**asdict(d), "range_start": d.range_start and d.range_start.isoformat(),
                                "range_end": d.range_end.isoformat()} for d in dropped]}
        event_id = stable_id("retention", now.isoformat(), *sorted(d.name for d in dropped))
        reason = f"dropped {len(dropped)} partitions/chunks ({sum(d.rows for d in dropped)} rows) past their retention"
        write_audit(conn, event_id, ts_ns, actor, "retention_drop", "storage", reason, details)
    return dropped
