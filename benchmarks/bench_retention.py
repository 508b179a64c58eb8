"""Retention cost: dropping a month of signals as a whole partition (or TimescaleDB chunks) against deleting the
same rows one by one, and the cost of the maintenance pass when there is nothing to do.

Starts its own PostgreSQL with the project's stack code (the wheel's PostgreSQL: native partitions; with
--timescale, /usr/lib/postgresql/15/bin with TimescaleDB: hypertables), migrates it, writes --rows signals in
January 2001 with one INSERT ... SELECT generate_series, then times each way of removing them.

    .venv/bin/python benchmarks/bench_retention.py [--rows 1000000] [--timescale]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.stack import postgres  # noqa: E402
from deploy.stack.process import free_port, stop  # noqa: E402
from deploy.settings import Settings  # noqa: E402
from storage import lifecycle, migrations  # noqa: E402

NOW = datetime(2001, 3, 17, tzinfo=timezone.utc)  # 30 days of retention: January goes, whole


def fill(engine: sa.Engine, rows: int) -> float:
    t0 = time.perf_counter()
    with engine.begin() as conn:
        lifecycle.ensure_ahead(conn, int(datetime(2001, 1, 1, tzinfo=timezone.utc).timestamp()) * 10**9, ("signals",))
        conn.execute(sa.text("""
            INSERT INTO signals (signal_id, ts, account, strategy, symbol, score, target, model_name, model_version)
            SELECT md5(i::text), TIMESTAMPTZ '2001-01-01 00:00+00' + (i % 2678400) * interval '1 second',
                   'bench', 'slot', 'BTC/USDT', NULL, 1.0, 'rule', '1'
            FROM generate_series(1, :n) AS i"""), {"n": rows})
    return time.perf_counter() - t0


def timed(engine: sa.Engine, fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    with engine.begin() as conn:
        out = fn(conn)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--timescale", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    settings = Settings(_env_file=None, home=home, database_url=None, pg_port=free_port(),
                        pg_bin_dir=Path("/usr/lib/postgresql/15/bin") if args.timescale else None)
    record = postgres.start(settings, settings.pg_port)
    try:
        url = postgres.url(settings, settings.pg_port)
        migrations.upgrade(url)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            kind = "TimescaleDB chunks" if lifecycle.is_hypertable(conn, "signals") else "native partitions"
        print(f"signals: {kind}, {args.rows:,} rows in January 2001")

        print(f"insert: {fill(engine, args.rows):.2f} s")
        s, _ = timed(engine, lambda c: c.execute(sa.text("SELECT count(*) FROM signals WHERE ts < '2001-02-01'")))
        print(f"count(*) of those rows (what the audit row's row counts cost, warm cache): {s * 1000:.0f} ms")
        s, dropped = timed(engine, lambda c: lifecycle.apply_retention(c, {"signals": 30}, NOW))
        print(f"retention (drop {len(dropped)} {dropped[0].kind}s, {sum(d.rows for d in dropped):,} rows, counts "
              f"included): {s * 1000:.0f} ms")

        fill(engine, args.rows)
        s, n = timed(engine, lambda c: c.execute(sa.text("DELETE FROM signals WHERE ts < :c"),
                                                 {"c": datetime(2001, 2, 1, tzinfo=timezone.utc)}).rowcount)
        print(f"DELETE of the same rows ({n:,}): {s * 1000:.0f} ms (and the table keeps the dead rows until VACUUM)")

        timed(engine, lambda c: lifecycle.apply_retention(c, {"signals": 30}, NOW))  # the emptied partitions
        s, _ = timed(engine, lambda c: (lifecycle.ensure_ahead(c, time.time_ns()), lifecycle.adopt_default_rows(c),
                                        lifecycle.apply_retention(c, {"signals": 30, "bars": 30}, NOW)))
        print(f"maintenance pass with nothing to do (6 tables): {s * 1000:.0f} ms")
        engine.dispose()
    finally:
        stop(record, settings.run_dir, sig=signal.SIGINT)


if __name__ == "__main__":
    main()
