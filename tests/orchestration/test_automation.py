"""The loop's automation as Dagster sees it: everything RUNNING by default, cadences from the settings, and a
cold-start sensor that walks from an empty store to a first gated model stage by stage (real Dagster
instance and evaluation contexts; no runs)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from orchestration import automation
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, symbols=["BTC/USDT", "ETH/USDT"], history_start="2026-11-01", bootstrap_days=3,
                         cron_tune="15 5 * * 3")


@pytest.fixture
def repo(settings):
    from orchestration.definitions import build

    return build(settings).get_repository_def()


def test_every_schedule_and_sensor_runs_by_default_with_the_settings_cadence(settings):
    schedules = {s.name: s for s in automation.schedules(settings)}
    sensors = {s.name: s for s in automation.sensors(settings)}
    assert set(schedules) == {"market_data_daily_schedule", "ml_features_job_schedule", "target_weights_job_schedule",
                              "daily_reports_schedule", "retrain_nightly", "tune_weekly", "weights_freshness_hourly",
                              "strategy_performance_job_schedule", "data_maintenance_schedule"}
    assert {"bootstrap_sensor", "ml_decay_sensor"} <= set(sensors)
    assert {s.default_status for s in schedules.values()} == {dg.DefaultScheduleStatus.RUNNING}
    assert {s.default_status for s in sensors.values()} == {dg.DefaultSensorStatus.RUNNING}
    assert schedules["tune_weekly"].cron_schedule == "15 5 * * 3"
    tune = schedules["tune_weekly"].evaluate_tick(dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 25, 5, 15, tzinfo=timezone.utc))).run_requests[0]
    assert tune.run_config["ops"]["strategy_tuning"]["config"]["gate_symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert schedules["market_data_daily_schedule"].cron_schedule == settings.cron_market_data
    assert sensors["ml_decay_sensor"].minimum_interval_seconds == settings.decay_interval_s


def test_a_bad_cron_is_one_line_naming_the_setting(tmp_path):
    import os

    env = {**os.environ, "TRADELOOP_HOME": str(tmp_path), "TRADELOOP_CRON_RETRAIN": "every night"}
    done = subprocess.run([str(Path(sys.executable).parent / "tradeloop"), "status"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: configuration: TRADELOOP_CRON_RETRAIN: Value error, not a five-field cron expression "
        "(minute hour day month weekday): 'every night'"]


def test_a_daily_schedule_asks_for_the_previous_day_of_every_symbol(repo):
    schedule = repo.get_schedule_def("market_data_daily_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, repository_def=repo,
                                        scheduled_execution_time=datetime(2026, 11, 20, 0, 10, tzinfo=timezone.utc))
        requests = schedule.evaluate_tick(ctx).run_requests
    assert sorted(r.partition_key for r in requests) == ["2026-11-19|BTC-USDT", "2026-11-19|ETH-USDT"]
    assert len({r.run_key for r in requests}) == 2  # a repeated tick of the same day launches nothing new


def _materialize(instance, key: dg.AssetKey, partition: str | None = None):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def test_bootstrap_walks_from_an_empty_store_to_a_gated_model(settings, repo, monkeypatch):
    from assets.market_data import ohlcv_clean
    from assets.ml import ml_features, ml_promotion
    from assets.portfolio import target_weights
    from assets.reports import tear_sheets

    today = date(2026, 11, 20)
    monkeypatch.setattr(automation, "_today", lambda: today)
    sensor = repo.get_sensor_def("bootstrap_sensor")
    days = ["2026-11-17", "2026-11-18", "2026-11-19"]
    assert automation.bootstrap_days(settings, today) == days

    def tick(instance):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))

    with dg.instance_for_test() as instance:
        first = tick(instance)
        assert sorted(r.partition_key for r in first.run_requests) == sorted(
            f"{d}|{s}" for d in days for s in ("BTC-USDT", "ETH-USDT"))
        assert {r.job_name for r in first.run_requests} == {"market_data_daily"}

        for d in days:  # one symbol short: still waiting for market data, asking only for what is missing
            _materialize(instance, ohlcv_clean.key, f"{d}|BTC-USDT")
        for d in days[:2]:
            _materialize(instance, ohlcv_clean.key, f"{d}|ETH-USDT")
        assert [r.partition_key for r in tick(instance).run_requests] == ["2026-11-19|ETH-USDT"]

        _materialize(instance, ohlcv_clean.key, "2026-11-19|ETH-USDT")
        features = tick(instance).run_requests
        assert {r.job_name for r in features} == {"ml_features_job"}
        assert sorted(r.partition_key for r in features) == days

        for d in days:
            _materialize(instance, ml_features.key, d)
        gated = {r.job_name: r for r in tick(instance).run_requests}
        assert set(gated) == {"retrain", "target_weights_job", "daily_reports"}
        assert gated["retrain"].run_config["ops"]["ml_challenger"]["config"]["days"] == 3
        assert gated["target_weights_job"].partition_key == "2026-11-19"

        _materialize(instance, ml_promotion.key)
        _materialize(instance, target_weights.key, "2026-11-19")
        _materialize(instance, tear_sheets.key)
        done = tick(instance)
        assert not done.run_requests and "bootstrap complete" in done.skip_message


def test_an_online_checkpoint_proposed_as_challenger_is_sent_to_the_gate_once(settings, repo, pg_url, engine):
    from assets.ml import MLResource
    from assets.resources import PostgresResource
    from storage.ml import record_model

    sensor = repo.get_sensor_def("online_gate_sensor")
    resources = {"db": PostgresResource(url=pg_url), "ml": MLResource(tracking_uri="unused", model_name="online-gate-m")}

    def tick():
        with dg.instance_for_test() as instance, dg.build_sensor_context(
                instance=instance, repository_def=repo, resources=resources) as ctx:
            return sensor.evaluate_tick(ctx)

    with engine.begin() as conn:  # a retrained (batch) challenger is gated by its own retrain run
        record_model(conn, "online-gate-m", "1", "run-1", "h1", "challenger", {"kind": "lightgbm"})
    assert not tick().run_requests
    with engine.begin() as conn:
        record_model(conn, "online-gate-m", "2", "run-2", "online", "challenger", {"kind": "river"})
    [request] = tick().run_requests
    assert request.run_key == "gate-online-2" and sensor.job_name == "gate"
