"""The data lifecycle assets materialised for real (dagster.materialize) against the test PostgreSQL:
storage_lifecycle (partitions ahead, retention from the settings) and strategy_performance (daily, per account
and strategy, from the fills and bars the stream writes)."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.maintenance import storage_lifecycle
from assets.performance import strategy_performance
from assets.resources import PostgresResource
from deploy.settings import get_settings
from storage import lifecycle, stream
from storage.stream import ts_of
from streaming.trader import SignalOut
from trading.records import Bar, Fill, Liquidity, Side, stable_id

NS = 1_000_000_000


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


@pytest.fixture
def retention_env(monkeypatch):
    def set_env(**days):
        for name, value in days.items():
            monkeypatch.setenv(f"TRADELOOP_RETENTION_{name.upper()}_DAYS", str(value))
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def test_storage_lifecycle_keeps_partitions_ahead_and_applies_the_retention_settings(pg_url, engine, retention_env):
    account = f"lc-a-{uuid.uuid4().hex[:6]}"
    old = datetime(1995, 5, 10, tzinfo=timezone.utc)  # far past 10 years of retention
    sig = SignalOut(stable_id("signal", account, "s", "BTC/USDT", _ns(old)), "s", "BTC/USDT", 1.0, _ns(old), "r", "1")
    with engine.begin() as conn:
        lifecycle.ensure_ahead(conn, _ns(old), ("signals",))
        stream.write_batch(conn, mode="paper", account=account, signals=[sig])
    retention_env(signals=3650, bars=0)

    result = dg.materialize([storage_lifecycle], resources={"db": PostgresResource(url=pg_url)})
    assert result.success
    meta = result.asset_materializations_for_node("storage_lifecycle")[0].metadata
    assert meta["retention_days"].data == {"signals": 3650}
    assert "signals_p199505" in meta["dropped_names"].data and meta["rows_dropped"].value >= 1
    next_month = ts_of(time.time_ns() + lifecycle.PARTITION_AHEAD_NS).strftime("%Y%m")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM signals WHERE account = :a"), {"a": account}).scalar() == 0
        for table in lifecycle.TIMESERIES:
            assert conn.execute(sa.text("SELECT to_regclass(:p)"), {"p": f"{table}_p{next_month}"}).scalar(), table
        audit = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'retention_drop'"
                                     " AND details->'dropped' @> CAST(:d AS jsonb)"),
                             {"d": '[{"name": "signals_p199505"}]'}).scalar()
    assert audit == 1


def test_a_nonsense_retention_setting_fails_the_run_naming_it(pg_url, engine, retention_env):
    retention_env(signals=-5)
    with pytest.raises(Exception, match="retention_signals_days"):
        dg.materialize([storage_lifecycle], resources={"db": PostgresResource(url=pg_url)})


def test_strategy_performance_is_written_per_account_and_strategy_for_the_day(pg_url, engine):
    account, exchange = f"lc-p-{uuid.uuid4().hex[:6]}", f"lc-p-{uuid.uuid4().hex[:6]}"
    day = date(2026, 11, 25)

    def at(d: int, hour: int) -> int:
        return _ns(datetime(2026, 11, d, hour, tzinfo=timezone.utc))

    def fill(fid: str, strategy: str, side: Side, price: int, ts: int) -> Fill:
        return Fill(f"{account}-{fid}", f"{account}-{fid}", account, strategy, exchange, "BTC/USDT", side,
                    Decimal(price), Decimal(1), Decimal("0.5"), "USDT", Liquidity.TAKER, ts)

    def bar(close: int, ts: int) -> Bar:
        c = Decimal(close)
        return Bar(exchange, "BTC/USDT", "1m", ts, ts, c, c, c, c, Decimal(1))

    with engine.begin() as conn:  # through the stream's own writer: fills and the bars it records
        stream.write_batch(conn, mode="paper", account=account,
                           fills=[fill("1", "trend", Side.BUY, 100, at(24, 10)), fill("2", "trend", Side.SELL, 110, at(25, 10)),
                                  fill("3", "meanrev", Side.BUY, 105, at(25, 11))],
                           bars=[bar(104, at(24, 23)), bar(108, at(25, 23))])
    for _ in range(2):  # a re-run replaces the day's rows
        result = dg.materialize([strategy_performance], partition_key=day.isoformat(),
                                resources={"db": PostgresResource(url=pg_url)})
        assert result.success
    with engine.connect() as conn:
        rows = {r.strategy: r for r in conn.execute(sa.text(
            "SELECT * FROM strategy_performance WHERE account = :a ORDER BY strategy"), {"a": account})}
    assert set(rows) == {"trend", "meanrev"} and {r.as_of for r in rows.values()} == {day}
    # trend: bought at 100, sold at 110, 0.5 fee each way: +9 and one winning round trip
    assert rows["trend"].pnl == Decimal(9) and rows["trend"].trade_count == 1 and rows["trend"].win_rate == 1
    assert rows["trend"].sharpe is not None  # two daily returns (24th and 25th)
    # meanrev: bought at 105 (fee 0.5), marked at the day's last bar, 108: +2.5, still open
    assert rows["meanrev"].pnl == Decimal("2.5") and rows["meanrev"].trade_count == 0
    assert rows["meanrev"].win_rate is None and rows["meanrev"].sharpe is None
    starting = float(get_settings().starting_cash)
    assert float(rows["meanrev"].total_return) == pytest.approx(2.5 / starting)


def test_maintenance_and_performance_schedules_run_by_default_on_their_cadence(monkeypatch):
    from orchestration.definitions import defs

    monkeypatch.setenv("TRADELOOP_CRON_MAINTENANCE", "5 */6 * * *")
    get_settings.cache_clear()
    try:
        definitions = defs()
        dg.Definitions.validate_loadable(definitions)
        maintenance = definitions.get_schedule_def("data_maintenance_schedule")
        performance = definitions.get_schedule_def("strategy_performance_job_schedule")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert maintenance.cron_schedule == "5 */6 * * *" and maintenance.job_name == "data_maintenance"
    assert {maintenance.default_status, performance.default_status} == {dg.DefaultScheduleStatus.RUNNING}
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 24, 0, 50, tzinfo=timezone.utc),
                                        instance=dg.DagsterInstance.ephemeral(),
                                        repository_def=definitions.get_repository_def())
    assert [r.partition_key for r in performance.evaluate_tick(context).run_requests] == ["2026-11-23"]
