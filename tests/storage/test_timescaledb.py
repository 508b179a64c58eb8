"""The TimescaleDB path: PostgreSQL 15 with the TimescaleDB extension (built from ../shared/vendor by
../shared/tools/build-timescaledb when missing and we are root on Debian), started by the project's own stack
code with TRADELOOP_PG_BIN_DIR pointing at it.  Migrations make hypertables, the stream's and the batch
layer's rows land in chunks, retention drops whole chunks.  Without TimescaleDB and no way to build it the
module is skipped with the reason; under CI=true that is a failure instead."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from deploy.settings import REPO_ROOT

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
CONTROL = Path("/usr/share/postgresql/15/extension/timescaledb.control")
NS = 1_000_000_000


def _builder() -> Path | None:
    """../shared/tools/build-timescaledb beside the repository (or beside the worktrees' folder)."""
    for base in (REPO_ROOT.parent, REPO_ROOT.parent.parent):
        path = base / "shared" / "tools" / "build-timescaledb"
        if path.exists():
            return path
    return None


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"TimescaleDB path cannot run under CI: {reason}")
    pytest.skip(reason)


def _timescale_bin_dir() -> Path:
    from tests.os_packages import installing

    if CONTROL.exists() and (PG15_BIN / "postgres").exists():
        return PG15_BIN
    with installing():
        return _build_timescaledb()


def _build_timescaledb() -> Path:
    if CONTROL.exists() and (PG15_BIN / "postgres").exists():  # built by another test worker meanwhile
        return PG15_BIN
    builder = _builder()
    if builder is None:
        _unavailable("TimescaleDB is not installed and ../shared/tools/build-timescaledb is not there to build it")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _unavailable("TimescaleDB is not installed; building it needs root and apt-get (Debian)")
    result = subprocess.run([str(builder)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        _unavailable(f"build-timescaledb failed: {result.stderr.strip()[-500:]}")
    return Path(result.stdout.split()[-1])


@pytest.fixture(scope="module")
def ts_engine():
    """An engine on a migrated PostgreSQL 15 + TimescaleDB server of its own (temporary home)."""
    from deploy.stack import postgres
    from deploy.stack.process import stop
    from storage import migrations
    from tests.conftest import make_settings

    bin_dir = _timescale_bin_dir()
    assert postgres.preload_libraries(bin_dir) == ["timescaledb"]
    home = Path(tempfile.mkdtemp(prefix="tradeloop-timescale-", dir=os.environ["TRADELOOP_HOME"]))
    settings = make_settings(home, pg_bin_dir=bin_dir)
    record = postgres.start(settings, settings.pg_port)
    try:
        url = postgres.url(settings, settings.pg_port)
        migrations.upgrade(url)
        engine = sa.create_engine(url)
        yield engine
        engine.dispose()
    finally:
        stop(record, settings.run_dir, sig=signal.SIGINT)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


def _chunks_of(conn, table: str, where: str, params: dict) -> set[str]:
    return set(conn.execute(sa.text(f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE {where}"),
                            params).scalars())


def test_migrations_make_every_timeseries_table_a_hypertable(ts_engine):
    from storage import lifecycle

    with ts_engine.connect() as conn:
        hyper = set(conn.execute(sa.text("SELECT hypertable_name FROM timescaledb_information.hypertables")).scalars())
        native = conn.execute(sa.text("SELECT count(*) FROM pg_partitioned_table")).scalar()
        assert all(lifecycle.is_hypertable(conn, t) for t in lifecycle.TIMESERIES)
    assert hyper == set(lifecycle.TIMESERIES)
    assert native == 0


def test_stream_and_batch_rows_land_in_chunks(ts_engine):
    import polars as pl

    from storage import lifecycle, market_data, stream
    from streaming.trader import SignalOut
    from trading.records import Bar, Fill, Liquidity, Side, stable_id

    account, exchange = f"ts-{uuid.uuid4().hex[:6]}", f"ts-{uuid.uuid4().hex[:6]}"
    t = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    ns = _ns(t)
    fill = Fill("f1", "o1", account, "s", exchange, "BTC/USDT", Side.BUY, Decimal(100), Decimal(1), Decimal("0.1"),
                "USDT", Liquidity.TAKER, ns)
    bar = Bar(exchange, "BTC/USDT", "1m", ns, ns, Decimal(100), Decimal(101), Decimal(99), Decimal(100), Decimal(1))
    sig = SignalOut(stable_id("signal", account, "s", "BTC/USDT", ns), "s", "BTC/USDT", 1.0, ns, "rule", "1")
    with ts_engine.begin() as conn:
        stream.ensure_partitions_ahead(conn, ns)  # nothing to do on hypertables, and no error
        assert lifecycle.ensure_ahead(conn, ns) == {t: 0 for t in lifecycle.TIMESERIES}
        for _ in range(2):  # a replay adds nothing
            stream.write_batch(conn, mode="paper", account=account, bars=[bar], fills=[fill], signals=[sig])
        stream.write_risk_metrics(conn, account, {"equity": 1.0}, ns)
        stream.write_audit(conn, f"{account}-a", ns, "test", "probe", account, "", {})
    frame = pl.DataFrame({"exchange": exchange, "symbol": "ETH/USDT", "interval": "1m", "ts": [ns + 60 * NS],
                          "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 1.0,
                          "record_id": ["r1"]})
    day = (ns - ns % (86_400 * NS), ns - ns % (86_400 * NS) + 86_400 * NS)
    with ts_engine.begin() as conn:
        market_data.replace_raw(conn, frame, exchange, "ETH/USDT", "1m", *day, "test", "2026-11-20")
        raw = market_data.read_raw(conn, exchange, "ETH/USDT", "1m", *day)
        market_data.replace_clean(conn, raw, raw.head(0).with_columns(pl.lit("").alias("reason")),
                                  pl.DataFrame(schema={"exchange": pl.Utf8, "symbol": pl.Utf8, "interval": pl.Utf8,
                                                       "gap_start": pl.Int64, "gap_end": pl.Int64, "missing": pl.Int64}),
                                  exchange, "ETH/USDT", "1m", *day, "2026-11-20")
    with ts_engine.connect() as conn:
        where = {
            "market_data": _chunks_of(conn, "market_data", "exchange = :e", {"e": exchange}),
            "market_data_clean": _chunks_of(conn, "market_data_clean", "exchange = :e", {"e": exchange}),
            "trades": _chunks_of(conn, "trades", "account = :a", {"a": account}),
            "signals": _chunks_of(conn, "signals", "account = :a", {"a": account}),
            "risk_metrics": _chunks_of(conn, "risk_metrics", "account = :a", {"a": account}),
            "audit_log": _chunks_of(conn, "audit_log", "scope = :a", {"a": account}),
        }
        counts = conn.execute(sa.text("SELECT (SELECT count(*) FROM market_data WHERE exchange = :e),"
                                      " (SELECT count(*) FROM trades WHERE account = :a),"
                                      " (SELECT count(*) FROM signals WHERE account = :a)"),
                              {"e": exchange, "a": account}).one()
    assert all(len(w) == 1 and next(iter(w)).startswith("_timescaledb_internal._hyper_") for w in where.values()), where
    assert tuple(counts) == (2, 1, 1)  # the stream's bar (BTC) and the batch layer's (ETH)
    # audit_log stays append-only as a hypertable (0013): the row trigger reaches its chunks
    chunk = next(iter(where["audit_log"]))
    for sql in (f"UPDATE audit_log SET reason = 'x' WHERE scope = '{account}'", f"DELETE FROM {chunk}"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), ts_engine.begin() as conn:
            conn.execute(sa.text(sql))


def test_retention_drops_whole_chunks_past_the_cutoff(ts_engine):
    """7-day chunks: rows on 2001-01-03, 2001-02-01 and 2001-03-01; 30 days before 2001-03-05 the cutoff is
    2001-02-03: January's chunk goes whole, the chunk of 2001-02-01 ends after the cutoff and stays."""
    from storage import lifecycle, stream
    from streaming.trader import SignalOut
    from trading.records import stable_id

    account = f"ts-r-{uuid.uuid4().hex[:6]}"
    times = [datetime(2001, 1, 3, tzinfo=timezone.utc), datetime(2001, 2, 1, tzinfo=timezone.utc),
             datetime(2001, 3, 1, tzinfo=timezone.utc)]
    sigs = [SignalOut(stable_id("signal", account, "s", "X/Y", _ns(t)), "s", "X/Y", 0.0, _ns(t), "rule", "1")
            for t in times]
    with ts_engine.begin() as conn:
        stream.write_batch(conn, mode="paper", account=account, signals=sigs)
        chunks_before = set(conn.execute(sa.text("SELECT chunk_name FROM timescaledb_information.chunks"
                                                 " WHERE hypertable_name = 'signals'")).scalars())
    now = datetime(2001, 3, 5, tzinfo=timezone.utc)
    with ts_engine.begin() as conn:
        dropped = lifecycle.apply_retention(conn, {"signals": 30}, now)
    assert [(d.table, d.kind, d.rows) for d in dropped] == [("signals", "chunk", 1)]
    assert dropped[0].range_end <= now - timedelta(days=30)
    with ts_engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT ts::date FROM signals WHERE account = :a ORDER BY ts"),
                            {"a": account}).scalars().all()
        chunks_after = set(conn.execute(sa.text("SELECT chunk_name FROM timescaledb_information.chunks"
                                                " WHERE hypertable_name = 'signals'")).scalars())
        audit = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'retention_drop'")).scalar()
        oldest_end = conn.execute(sa.text("SELECT min(range_end) FROM timescaledb_information.chunks"
                                          " WHERE hypertable_name = 'signals'")).scalar()
    assert kept == [date(2001, 2, 1), date(2001, 3, 1)]
    assert chunks_before - chunks_after == {dropped[0].name.split(".")[1]}
    assert audit == 1
    assert oldest_end > now - timedelta(days=30)  # every chunk left ends after the cutoff
    with ts_engine.begin() as conn:
        assert lifecycle.apply_retention(conn, {"signals": 30}, now) == []


def test_no_preload_for_binaries_without_timescaledb():
    from deploy.settings import Settings
    from deploy.stack import postgres

    wheel = postgres.find_bin_dir(Settings(_env_file=None, pg_bin_dir=None))
    assert not (Path(subprocess.run([str(wheel / "pg_config"), "--sharedir"], capture_output=True, text=True)
                     .stdout.strip()) / "extension" / "timescaledb.control").exists()
    assert postgres.preload_libraries(wheel) == []


def test_migration_0007_moves_existing_signals_into_chunks(ts_engine):
    from tests.storage.test_lifecycle import signals_survive_migration_0007

    rows = signals_survive_migration_0007(ts_engine.url.render_as_string(hide_password=False))
    assert len(rows) == 2 and all(r[2].startswith("_timescaledb_internal._hyper_") for r in rows)


def test_retention_as_the_batch_role_drops_chunks_through_the_owners_function():
    """A TimescaleDB server set up as `up` sets one up (a role per component, deploy/stack/pgroles.py): the batch
    jobs' role owns no hypertable, yet retention drops whole chunks past the cutoff -- and nothing else."""
    from deploy.stack import pgroles, postgres
    from deploy.stack.process import stop
    from storage import lifecycle, stream
    from streaming.trader import SignalOut
    from tests.conftest import make_settings
    from trading.records import stable_id

    bin_dir = _timescale_bin_dir()
    home = Path(tempfile.mkdtemp(prefix="tradeloop-timescale-roles-", dir=os.environ["TRADELOOP_HOME"]))
    settings = make_settings(home, pg_bin_dir=bin_dir)
    record = postgres.start(settings, settings.pg_port)
    engines = {}
    try:
        pgroles.migrate_and_grant(settings)
        engines = {c: sa.create_engine(settings.database_url_for(c), poolclass=sa.pool.NullPool)
                   for c in ("stream", "batch")}
        times = [datetime(2001, 1, 3, tzinfo=timezone.utc), datetime(2001, 3, 1, tzinfo=timezone.utc)]
        sigs = [SignalOut(stable_id("signal", "ts-roles", "s", "X/Y", _ns(t)), "s", "X/Y", 0.0, _ns(t), "rule", "1")
                for t in times]
        with engines["stream"].begin() as conn:
            stream.write_batch(conn, mode="paper", account="ts-roles", signals=sigs)
        with engines["batch"].begin() as conn:
            owner = conn.execute(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'signals'")).scalar()
            assert owner == pgroles.role("migrate")
            dropped = lifecycle.apply_retention(conn, {"signals": 30}, datetime(2001, 3, 5, tzinfo=timezone.utc))
        assert [(d.table, d.kind, d.rows) for d in dropped] == [("signals", "chunk", 1)]
        with engines["batch"].connect() as conn:
            kept = conn.execute(sa.text("SELECT ts::date FROM signals WHERE account = 'ts-roles'")).scalars().all()
            assert kept == [date(2001, 3, 1)]
            with pytest.raises(sa.exc.DBAPIError, match="has no retention"):
                conn.execute(sa.text("SELECT tradeloop_drop_chunks('orders', now())")).all()
    finally:
        for eng in engines.values():
            eng.dispose()
        stop(record, settings.run_dir, sig=signal.SIGINT)
