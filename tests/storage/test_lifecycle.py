"""storage.lifecycle on the native-partition path (the embedded server of tests/conftest.py): partitions kept
ahead for every time-series table, retention that drops whole partitions only, never the default one."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
import sqlalchemy as sa

from storage import lifecycle, market_data, stream
from streaming.trader import SignalOut
from trading.records import stable_id

NS = 1_000_000_000


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


def _partitions(engine, table: str) -> set[str]:
    with engine.connect() as c:
        return set(c.execute(sa.text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                     " WHERE i.inhparent = CAST(:t AS regclass)"), {"t": table}).scalars())


def _signals(account: str, times: list[datetime]) -> list[SignalOut]:
    return [SignalOut(stable_id("signal", account, "slot", "BTC/USDT", _ns(t)), "slot", "BTC/USDT", 1.0, _ns(t),
                      "rule", "1") for t in times]


def _bars(exchange: str, times: list[datetime]) -> pl.DataFrame:
    return pl.DataFrame({"exchange": exchange, "symbol": "BTC/USDT", "interval": "1m", "ts": [_ns(t) for t in times],
                         "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 1.0,
                         "record_id": [f"{exchange}-{i}" for i in range(len(times))]})


@pytest.mark.parametrize("table", lifecycle.TIMESERIES)
def test_every_timeseries_table_is_range_partitioned_with_a_default(engine, table):
    with engine.connect() as conn:
        strategy = conn.execute(sa.text("SELECT pt.partstrat FROM pg_partitioned_table pt JOIN pg_class c"
                                        " ON c.oid = pt.partrelid WHERE c.relname = :t"), {"t": table}).scalar()
        assert not lifecycle.is_hypertable(conn, table)
    assert strategy == "r"
    assert f"{table}_default" in _partitions(engine, table)


def test_partitions_ahead_for_every_timeseries_table(engine):
    now_ns = _ns(datetime(2032, 7, 10, tzinfo=timezone.utc))  # months nothing else creates
    with engine.begin() as conn:
        created = lifecycle.ensure_ahead(conn, now_ns)
    with engine.begin() as conn:
        again = lifecycle.ensure_ahead(conn, now_ns)
    assert created == {t: 2 for t in lifecycle.TIMESERIES}
    assert again == {t: 0 for t in lifecycle.TIMESERIES}
    for table in lifecycle.TIMESERIES:
        assert {f"{table}_p203207", f"{table}_p203208"} <= _partitions(engine, table)


def test_signals_are_partitioned_and_a_replayed_batch_adds_nothing(engine):
    account = f"lc-sig-{uuid.uuid4().hex[:6]}"
    signals = _signals(account, [datetime(2032, 7, 11, 12, tzinfo=timezone.utc)])
    with engine.begin() as conn:
        lifecycle.ensure_ahead(conn, _ns(datetime(2032, 7, 10, tzinfo=timezone.utc)))
    for _ in range(2):
        with engine.begin() as conn:
            stream.write_batch(conn, mode="paper", account=account, signals=signals)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT tableoid::regclass::text FROM signals WHERE account = :a"),
                            {"a": account}).scalars().all()
    assert rows == ["signals_p203207"]


def test_retention_drops_whole_partitions_past_the_cutoff_only(engine):
    """Signals and bars in Jan, Feb and Mar 1990 (through the stream's and the batch layer's writers), one more
    row in the default partition: 30 days before 1990-03-17 the cutoff is 1990-02-15, so January's partitions
    go (whole), February's straddles the cutoff and stays, and the default partition is never dropped."""
    account, exchange = f"lc-ret-{uuid.uuid4().hex[:6]}", f"lc-ret-{uuid.uuid4().hex[:6]}"
    months = [datetime(1990, m, 10, tzinfo=timezone.utc) for m in (1, 2, 3)]
    stray = datetime(1989, 6, 1, tzinfo=timezone.utc)  # a month without partition: lands in the default
    with engine.begin() as conn:
        for t in months:
            lifecycle.ensure_ahead(conn, _ns(t), ("signals", "market_data"))
        stream.write_batch(conn, mode="paper", account=account, signals=_signals(account, [*months, stray]))
        start, end = _ns(datetime(1990, 1, 1, tzinfo=timezone.utc)), _ns(datetime(1990, 4, 1, tzinfo=timezone.utc))
        market_data.replace_raw(conn, _bars(exchange, months), exchange, "BTC/USDT", "1m", start, end, "test", "1990")
    before = _partitions(engine, "signals")
    assert {"signals_p199001", "signals_p199002", "signals_p199003", "signals_default"} <= before

    now = datetime(1990, 3, 17, tzinfo=timezone.utc)
    with engine.begin() as conn:
        dropped = lifecycle.apply_retention(conn, {"signals": 30, "bars": 30, "clean_bars": 0, "risk_metrics": None},
                                            now)
    assert sorted((d.table, d.name, d.kind) for d in dropped) == [
        ("market_data", "market_data_p199001", "partition"), ("signals", "signals_p199001", "partition")]
    assert all(d.range_end <= now - timedelta(days=30) for d in dropped)
    assert {d.name: d.rows for d in dropped} == {"market_data_p199001": 1, "signals_p199001": 1}
    after = _partitions(engine, "signals")
    assert before - after == {"signals_p199001"} and "signals_default" in after
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT tableoid::regclass::text, ts FROM signals WHERE account = :a ORDER BY ts"),
                            {"a": account}).all()
        bars = conn.execute(sa.text("SELECT count(*) FROM market_data WHERE exchange = :e"), {"e": exchange}).scalar()
        audit = conn.execute(sa.text("SELECT actor, reason, details FROM audit_log WHERE action = 'retention_drop'"
                                     " AND details->'dropped' @> CAST(:d AS jsonb)"),
                             {"d": '[{"name": "signals_p199001"}]'}).all()
    assert [r[0] for r in kept] == ["signals_default", "signals_p199002", "signals_p199003"]
    assert bars == 2
    assert len(audit) == 1 and audit[0][0] == "maintenance" and "2 partitions" in audit[0][1]
    assert audit[0][2]["retention_days"] == {"signals": 30, "bars": 30}

    with engine.begin() as conn:  # again: nothing left to drop, no audit row
        assert lifecycle.apply_retention(conn, {"signals": 30, "bars": 30}, now) == []

    # the maintenance job first gives months stranded in the default partition their own partition: the
    # stray row of June 1989 moves out of the default, and goes with its month
    with engine.begin() as conn:
        assert lifecycle.adopt_default_rows(conn, ("signals",))["signals"] >= 1
        assert lifecycle.adopt_default_rows(conn, ("signals",)) == {"signals": 0}
        dropped = lifecycle.apply_retention(conn, {"signals": 30}, now)
    assert ("signals_p198906", 1) in [(d.name, d.rows) for d in dropped]
    assert "signals_default" in _partitions(engine, "signals")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT min(ts) FROM signals WHERE account = :a"),
                            {"a": account}).scalar() == months[1]


@pytest.mark.parametrize("bad, message", [
    ({"signals": -1}, "whole number of days"), ({"signals": 1.5}, "whole number of days"),
    ({"signals": True}, "whole number of days"), ({"ticks": 3}, "unknown data kinds"),
])
def test_nonsense_retention_is_refused_before_anything_is_dropped(engine, bad, message):
    with pytest.raises(ValueError, match=message), engine.begin() as conn:
        lifecycle.apply_retention(conn, bad, datetime(1990, 3, 17, tzinfo=timezone.utc))


def test_retention_settings_refuse_nonsense_and_zero_keeps_forever():
    from pydantic import ValidationError

    from deploy.settings import Settings

    assert lifecycle.check_retention(Settings(_env_file=None, retention_signals_days=0).retention_days()) == {}
    assert lifecycle.check_retention(Settings(_env_file=None, retention_bars_days=90).retention_days()) == {"bars": 90}
    for bad in ({"retention_bars_days": -1}, {"retention_signals_days": "1.5"}, {"retention_clean_bars_days": 10 ** 6},
                {"cron_maintenance": "every day"}):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, **bad)


def signals_survive_migration_0007(server_url: str) -> list[tuple]:
    """Migrate a new database of ``server_url``'s server to 0005, store signals in the plain table, migrate to
    the heads; returns (signal_id, ts, partition) of the rows after, and checks a replay still adds nothing."""
    from storage import migrations
    from storage.db import ensure_databases

    name = f"mig_{uuid.uuid4().hex[:8]}"
    base, _, _ = server_url.rpartition("/")
    ensure_databases(f"{base}/postgres", [name])
    url = f"{base}/{name}"
    migrations.upgrade(url, "0005")
    account = "mig"
    signals = _signals(account, [datetime(2024, 2, 3, tzinfo=timezone.utc), datetime(2025, 7, 9, tzinfo=timezone.utc)])
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:  # as the 0005-era writer stored them (today's writer knows later columns)
            conn.execute(sa.text("""INSERT INTO signals (signal_id, ts, account, strategy, symbol, score, target,
                                    model_name, model_version, shadow)
                                    VALUES (:i, :ts, :a, :st, :sy, :sc, :t, :m, :v, :sh)"""),
                         [{"i": x.signal_id, "ts": stream.ts_of(x.ts), "a": account, "st": x.strategy, "sy": x.symbol,
                           "sc": x.score, "t": x.target, "m": x.model_name, "v": x.model_version, "sh": x.shadow}
                          for x in signals])
        migrations.upgrade(url)
        with eng.begin() as conn:
            stream.write_batch(conn, mode="paper", account=account, signals=signals)  # a replay after the change
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT signal_id, ts, tableoid::regclass::text FROM signals ORDER BY ts"))]
    finally:
        eng.dispose()


def test_migration_0007_keeps_existing_signals_in_their_months(pg_url):
    rows = signals_survive_migration_0007(pg_url)
    assert [r[2] for r in rows] == ["signals_p202402", "signals_p202507"]
