"""When the assets run: the jobs, schedules and sensors of the code location.

The assets (assets/) say what is computed and how; this module says when. Partitioned jobs take their
partitions from the assets they select.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from assets.market_data import ohlcv, ohlcv_clean
from assets.ml import MLResource, ml_challenger, ml_features, ml_labels, ml_promotion
from assets.portfolio import target_weights
from assets.reports import tear_sheets
from assets.resources import PostgresResource
from assets.tuning import strategy_tuning
from assets.warehouse import warehouse_dbt_assets
from assets.maintenance import storage_lifecycle
from assets.performance import strategy_performance
from deploy.settings import Settings

# ---- market data --------------------------------------------------------------------------------
market_data_daily = dg.define_asset_job(
    "market_data_daily", selection=[ohlcv, ohlcv_clean],
    description="Yesterday's bars for every symbol: raw, then clean, with their quality checks.",
)
# shortly after midnight UTC, once the day's last bar has closed, for every symbol
market_data_schedule = dg.build_schedule_from_partitioned_job(
    market_data_daily, hour_of_day=0, minute_of_hour=10, default_status=dg.DefaultScheduleStatus.RUNNING,
)

# ---- portfolio ----------------------------------------------------------------------------------
target_weights_job = dg.define_asset_job("target_weights_job", selection=[target_weights])  # daily, from the asset
# after each UTC day closes (and after the day's market data is in): that day's partition
target_weights_schedule = dg.build_schedule_from_partitioned_job(target_weights_job, hour_of_day=0, minute_of_hour=30)

# ---- warehouse and reports ----------------------------------------------------------------------
warehouse_build = dg.define_asset_job(
    "warehouse_build", selection=dg.AssetSelection.assets(warehouse_dbt_assets),
    description="dbt build: every warehouse model and its tests (asset checks).",
)
daily_reports = dg.define_asset_job(
    "daily_reports", selection=dg.AssetSelection.assets(warehouse_dbt_assets, tear_sheets),
    description="Build the warehouse (dbt build), then the day's tear sheets.",
)
# 00:30 UTC: the previous day is complete (the report's default as_of is yesterday)
daily_reports_schedule = dg.ScheduleDefinition(
    job=daily_reports, cron_schedule="30 0 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

# ---- ML -----------------------------------------------------------------------------------------
retrain_job = dg.define_asset_job("retrain", selection=dg.AssetSelection.assets(ml_challenger, ml_promotion),
                                  description="Train a challenger on stored features/labels, then decide its "
                                              "promotion (and check the decision).")
ml_features_job = dg.define_asset_job("ml_features_job", selection=dg.AssetSelection.assets(ml_features, ml_labels))
ml_features_schedule = dg.build_schedule_from_partitioned_job(ml_features_job, hour_of_day=0, minute_of_hour=40)
retrain_nightly = dg.ScheduleDefinition(name="retrain_nightly", job=retrain_job, cron_schedule="30 2 * * *",
                                        execution_timezone="UTC")


@dg.sensor(job=retrain_job, minimum_interval_seconds=900, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Launch retrain when the champion's live rolling Sharpe / hit rate falls below its threshold "
                       "or its features drift (population stability index) past the threshold.")
def ml_decay_sensor(context: dg.SensorEvaluationContext, db: PostgresResource, ml: MLResource):
    from ml.monitoring import DecayThresholds, decay_reasons

    # account/strategy come from the resource so a deployment (or a test) can watch its own trades
    reasons = decay_reasons(db.engine(), ml, DecayThresholds(strategy=ml.monitor_strategy),
                            account=ml.monitor_account or None)
    if not reasons:
        return dg.SkipReason("champion performance and feature drift within thresholds")
    hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H")
    return dg.RunRequest(run_key=f"decay-{hour}", tags={"tradeloop/retrain_reason": "; ".join(reasons)[:200]})


tune_job = dg.define_asset_job("tune", selection=dg.AssetSelection.assets(strategy_tuning),
                               description="Run (or resume) an Optuna study of a strategy's parameters.")

# ---- data lifecycle -----------------------------------------------------------------------------
data_maintenance = dg.define_asset_job(
    "data_maintenance", selection=dg.AssetSelection.assets(storage_lifecycle),
    description="Partitions of every time-series table ahead of time, then the retention settings "
                "(whole partitions/chunks dropped, an audit_log row per run that dropped something).",
)


def data_maintenance_schedule(cron: str) -> dg.ScheduleDefinition:
    """The maintenance job on ``cron`` (the setting maintenance_cron; orchestration/definitions.py passes it)."""
    return dg.ScheduleDefinition(name="data_maintenance_schedule", job=data_maintenance, cron_schedule=cron,
                                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)


strategy_performance_job = dg.define_asset_job("strategy_performance_job", selection=[strategy_performance])
# after the day closes; its marks are the day's last bars, which the stream stores as they close
strategy_performance_schedule = dg.build_schedule_from_partitioned_job(
    strategy_performance_job, hour_of_day=0, minute_of_hour=50, default_status=dg.DefaultScheduleStatus.RUNNING,
)

JOBS = [market_data_daily, target_weights_job, warehouse_build, daily_reports, retrain_job, ml_features_job, tune_job,
        data_maintenance, strategy_performance_job]
SCHEDULES = [market_data_schedule, target_weights_schedule, daily_reports_schedule, ml_features_schedule,
             retrain_nightly, data_maintenance_schedule(Settings.model_fields["maintenance_cron"].default),
             strategy_performance_schedule]
SENSORS = [ml_decay_sensor]
