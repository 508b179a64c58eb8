"""The historical store as Dagster assets: real runs on the sim venue against a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, timedelta
from urllib.parse import unquote

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.market_data import OHLCV_PARTITIONS, ohlcv, ohlcv_clean
from assets.resources import MarketDataSource, PostgresResource


@pytest.fixture(scope="module")
def resources(pg_url):
    return {"db": PostgresResource(url=pg_url), "market_source": MarketDataSource(kind="sim", seed=7)}


def materialize(resources, partition: str, run_config: dict | None = None, selection=(ohlcv, ohlcv_clean)):
    return dg.materialize(list(selection), partition_key=partition, resources=resources,
                          run_config=run_config or {}, raise_on_error=False)


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def count(engine, table: str, symbol: str, day: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"""SELECT count(*) FROM {table} WHERE exchange = 'sim' AND symbol = :s
                                       AND ts >= CAST(:d AS date) AND ts < CAST(:d AS date) + 1"""),
                            {"s": symbol, "d": day}).scalar()


def test_partitions_are_day_by_symbol():
    keys = OHLCV_PARTITIONS.get_partition_keys()
    assert "2026-11-01|BTC-USDT" in keys and "2026-11-01|SOL-USDT" in keys
    assert {k.split("|")[1] for k in keys} == {"BTC-USDT", "ETH-USDT", "SOL-USDT"}


def test_backfill_of_seven_days_by_three_symbols(resources, engine):
    days = [(date(2026, 11, 1) + timedelta(days=i)).isoformat() for i in range(7)]
    for day in days:
        for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
            result = materialize(resources, f"{day}|{symbol}")
            assert result.success, f"{day}|{symbol}"
            assert checks(result) == {"raw_quality": True, "clean_quality": True}, f"{day}|{symbol}"
    week = "exchange = 'sim' AND ts >= '2026-11-01' AND ts < '2026-11-08'"  # other tests use other exchanges
    with engine.connect() as conn:
        raw = dict(conn.execute(sa.text(f"SELECT symbol, count(*) FROM market_data WHERE {week} GROUP BY 1")).all())
        clean = dict(conn.execute(sa.text(
            f"SELECT symbol, count(*) FROM market_data_clean WHERE {week} GROUP BY 1")).all())
        quarantined = dict(conn.execute(sa.text(
            f"SELECT symbol, count(*) FROM market_data_quarantine WHERE {week} GROUP BY 1")).all())
    assert raw == {"BTC/USDT": 7 * 1440, "ETH/USDT": 7 * 1440, "SOL/USDT": 7 * 1440}
    # every raw bar is either clean or quarantined with a reason; the sim's own rare outliers are few
    for symbol, n in raw.items():
        assert clean[symbol] + quarantined.get(symbol, 0) == n
        assert quarantined.get(symbol, 0) <= 0.001 * n


def test_rematerialising_a_partition_replaces_it(resources, engine):
    for _ in range(2):
        assert materialize(resources, "2026-11-10|BTC-USDT").success
    assert count(engine, "market_data", "BTC/USDT", "2026-11-10") == 1440
    assert count(engine, "market_data_clean", "BTC/USDT", "2026-11-10") == 1440


def test_seeded_bad_rows_fail_the_raw_check_and_are_quarantined(resources, engine):
    from deploy.settings import get_settings

    settings = get_settings()  # what the assets themselves read
    result = materialize(resources, "2026-11-11|ETH-USDT", {"ops": {"ohlcv": {"config": {"inject_bad_rows": 5}}}})
    assert result.success
    assert checks(result) == {"raw_quality": False, "clean_quality": True}
    with engine.connect() as conn:
        reasons = dict(conn.execute(sa.text("""
            SELECT reason, count(*) FROM market_data_quarantine
            WHERE partition_key = '2026-11-11|ETH-USDT' GROUP BY reason
        """)).all())
        stored = conn.execute(sa.text("""
            SELECT asset, success, failed FROM dq_results WHERE partition_key = '2026-11-11|ETH-USDT'
            ORDER BY asset
        """)).all()
    assert reasons == {"not_finite": 1, "negative_volume": 1, "ohlc_inconsistent": 1, "conflicting_duplicate": 1,
                       "unconfirmed_jump": 1}
    assert [(a, ok) for a, ok, _ in stored] == [("ohlcv", False), ("ohlcv_clean", True)]
    # nothing bad reached the clean layer, and every removed bar left a marked gap
    assert count(engine, "market_data_clean", "ETH/USDT", "2026-11-11") == 1440 - 4
    with engine.connect() as conn:
        marked = conn.execute(sa.text("""SELECT count(*) FROM market_data_clean WHERE gap_before AND exchange = 'sim'
                                         AND symbol = 'ETH/USDT' AND ts::date = '2026-11-11'""")).scalar()
    assert marked == 4

    raw_check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "raw_quality")
    docs_url = raw_check.metadata["data_docs"].value
    assert docs_url.startswith(settings.docs_url + "/data_docs/validations/ohlcv_raw/")
    page = settings.site_dir / docs_url.removeprefix(settings.docs_url + "/")
    assert page.exists()
    # the Data Docs home page lists it as a plain link (offline: no script renders the list)
    index = (settings.site_dir / "data_docs" / "index.html").read_text()
    links = {unquote(h) for h in re.findall(r'<a href="([^"]+)"', index)}
    assert page.relative_to(settings.site_dir / "data_docs").as_posix() in links
    html = page.read_text()
    assert "expect_column_values_to_be_between" in html or "values must be greater than or equal to" in html
    # readable offline: nothing is loaded from a CDN, the local copies exist
    assert not re.findall(r'<(?:script|link)[^>]+(?:src|href)="https?://', html)
    for local in re.findall(r'(?:src|href)="((?:\.\./)*static/vendor/[^"]+)"', html):
        assert (page.parent / local).resolve().exists(), local


def test_bad_rows_already_stored_never_reach_the_clean_layer(resources, engine):
    assert materialize(resources, "2026-11-12|SOL-USDT").success
    with engine.begin() as conn:
        conn.execute(sa.text("""UPDATE market_data SET volume = -5
                                WHERE symbol = 'SOL/USDT' AND ts = '2026-11-12T10:00:00Z'"""))
        conn.execute(sa.text("""UPDATE market_data SET close = 'NaN'
                                WHERE symbol = 'SOL/USDT' AND ts = '2026-11-12T11:00:00Z'"""))
    result = materialize(resources, "2026-11-12|SOL-USDT", selection=(ohlcv_clean,))
    assert result.success and checks(result) == {"clean_quality": True}
    with engine.connect() as conn:
        quarantined = conn.execute(sa.text("""
            SELECT to_char(ts AT TIME ZONE 'UTC', 'HH24:MI'), reason FROM market_data_quarantine
            WHERE partition_key = '2026-11-12|SOL-USDT' ORDER BY ts
        """)).all()
        leaked = conn.execute(sa.text("""SELECT count(*) FROM market_data_clean WHERE exchange = 'sim'
                                         AND symbol = 'SOL/USDT' AND (volume < 0 OR close = 'NaN')""")).scalar()
    assert quarantined == [("10:00", "negative_volume"), ("11:00", "not_finite")]
    assert leaked == 0


def test_a_failed_clean_check_blocks_downstream_assets(resources, engine):
    @dg.asset(deps=[ohlcv_clean], partitions_def=OHLCV_PARTITIONS)
    def downstream() -> None:
        raise AssertionError("must not run on a partition whose clean check failed")

    assert materialize(resources, "2026-11-13|BTC-USDT").success
    with engine.begin() as conn:  # a third of the day goes missing: completeness fails
        conn.execute(sa.text("""DELETE FROM market_data WHERE symbol = 'BTC/USDT'
                                AND ts >= '2026-11-13T00:00:00Z' AND ts < '2026-11-13T08:00:00Z'"""))
    result = materialize(resources, "2026-11-13|BTC-USDT", selection=(ohlcv_clean, downstream))
    assert checks(result) == {"clean_quality": False}
    assert not result.success
    ran = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert ran == {"ohlcv_clean"}


def test_daily_schedule_requests_yesterday_for_every_symbol():
    from datetime import datetime, timezone

    from orchestration.definitions import defs

    definitions = defs()
    schedule = definitions.get_schedule_def("market_data_daily_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # 24/7: on without a click
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 24, 0, 10, tzinfo=timezone.utc),
        instance=dg.DagsterInstance.ephemeral(), repository_def=definitions.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == [
        "2026-11-23|BTC-USDT", "2026-11-23|ETH-USDT", "2026-11-23|SOL-USDT"]


def test_runs_without_data_docs_still_check_and_record_but_leave_the_site(resources, engine):
    """update_data_docs off (the simulation's runs): both checks run and are recorded, no page is rendered
    and no link is given; assets.data_docs.build_site renders the pages later."""
    from assets.data_docs import build_site
    from assets.market_data import gx_dirs
    from deploy.settings import get_settings

    project_dir, site_dir = gx_dirs(get_settings())
    off = {"ops": {op: {"config": {"update_data_docs": False}} for op in ("ohlcv", "ohlcv_clean")}}
    result = materialize(resources, "2026-11-14|ETH-USDT", off)
    assert result.success and checks(result) == {"raw_quality": True, "clean_quality": True}
    assert all("data_docs" not in e.metadata for e in result.get_asset_check_evaluations())
    with engine.connect() as conn:
        stored = conn.execute(sa.text("""SELECT asset, success, docs_url FROM dq_results
                                         WHERE partition_key = '2026-11-14|ETH-USDT' ORDER BY asset""")).all()
    assert stored == [("ohlcv", True, None), ("ohlcv_clean", True, None)]
    label = f"2026-11-14_ETH-USDT_{result.run_id[:8]}"
    assert not list((site_dir / "validations").glob(f"*/{label}"))
    index = build_site(project_dir, site_dir).read_text()
    for suite in ("ohlcv_raw", "ohlcv_clean"):
        (page,) = (site_dir / "validations" / suite / label).rglob("*.html")
        assert page.relative_to(site_dir).as_posix() in {unquote(h) for h in re.findall(r'<a href="([^"]+)"', index)}
