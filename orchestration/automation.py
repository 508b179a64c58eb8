"""When the assets run: the jobs, schedules and sensors of the code location.

The assets (assets/) say what is computed and how; this module says when. Partitioned jobs take their
partitions from the assets they select. Every schedule and sensor runs by default (the platform is
autonomous: a fresh `make run` backfills, trains, gates, re-weights, reports and watches with no human
action); their cadences are settings (deploy/settings.py, `TRADELOOP_CRON_*`), read when the code location
loads.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg

from assets.market_data import ohlcv, ohlcv_clean
from assets.ml import MLResource, ml_challenger, ml_features, ml_labels, ml_promotion
from assets.portfolio import target_weights, weights_fresh
from assets.reports import tear_sheets
from assets.resources import PostgresResource
from assets.tuning import strategy_tuning
from assets.warehouse import warehouse_dbt_assets
from assets.maintenance import storage_lifecycle
from assets.performance import strategy_performance
from deploy.settings import Settings

RUNNING = dg.DefaultScheduleStatus.RUNNING
SENSOR_RUNNING = dg.DefaultSensorStatus.RUNNING

# ---- jobs: what runs together ------------------------------------------------------------------
market_data_daily = dg.define_asset_job(
    "market_data_daily", selection=[ohlcv, ohlcv_clean],
    description="A day's bars for one symbol: raw, then clean, with their quality checks and Data Docs.",
)
target_weights_job = dg.define_asset_job("target_weights_job", selection=[target_weights],
                                         description="The day's target weights of the portfolio (re-weighting).")
warehouse_build = dg.define_asset_job(
    "warehouse_build", selection=dg.AssetSelection.assets(warehouse_dbt_assets),
    description="dbt build: every warehouse model and its tests (asset checks).",
)
daily_reports = dg.define_asset_job(
    "daily_reports", selection=dg.AssetSelection.assets(warehouse_dbt_assets, tear_sheets),
    description="Build the warehouse (dbt build), then the day's tear sheets.",
)
retrain_job = dg.define_asset_job("retrain", selection=dg.AssetSelection.assets(ml_challenger, ml_promotion),
                                  description="Train a challenger on stored features/labels, then decide its "
                                              "promotion (and check the decision).")
ml_features_job = dg.define_asset_job("ml_features_job", selection=dg.AssetSelection.assets(ml_features, ml_labels),
                                      description="A day's model features and labels from the clean bars.")
gate_job = dg.define_asset_job("gate", selection=dg.AssetSelection.assets(ml_promotion),
                               description="Decide the promotion of the registry's challenger (no training): for "
                                           "versions proposed outside a retrain, such as an online model's checkpoint.")
tune_job = dg.define_asset_job("tune", selection=dg.AssetSelection.assets(strategy_tuning),
                               description="Run (or resume) an Optuna study of a strategy's parameters.")

weights_freshness_job = dg.define_asset_job(
    "weights_freshness", selection=dg.AssetSelection.checks(weights_fresh),
    description="Are the target weights that trade now older than weights_max_age_hours? (alerts to audit_log)")

data_maintenance = dg.define_asset_job(
    "data_maintenance", selection=dg.AssetSelection.assets(storage_lifecycle),
    description="Partitions of every time-series table ahead of time, then the retention settings "
                "(whole partitions/chunks dropped, an audit_log row per run that dropped something).",
)
strategy_performance_job = dg.define_asset_job(
    "strategy_performance_job", selection=[strategy_performance],
    description="The day's strategy_performance rows per account and strategy.")

JOBS = [market_data_daily, target_weights_job, warehouse_build, daily_reports, retrain_job, ml_features_job, tune_job,
        gate_job, weights_freshness_job, data_maintenance, strategy_performance_job]


def _retrain_config(days: int) -> dict:
    return {"ops": {"ml_challenger": {"config": {"days": days}}}}


# ---- schedules: the steady state ----------------------------------------------------------------
def daily_partition_schedule(job, name: str, cron: str, settings: Settings, by_symbol: bool = False):
    """At each tick of `cron`, the job for the last complete UTC day (for every symbol when the job is
    partitioned by day x symbol). Run keys make a repeated tick of the same day a no-op."""
    from assets.partitions import symbol_key

    @dg.schedule(name=name, job=job, cron_schedule=cron, execution_timezone="UTC", default_status=RUNNING,
                 description=f"{job.name} for the previous UTC day at '{cron}' (UTC)")
    def _schedule(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.astimezone(timezone.utc).date() - timedelta(days=1)
        if day < date.fromisoformat(settings.history_start):
            return dg.SkipReason(f"{day} is before the history start {settings.history_start}")
        keys = [f"{day}|{symbol_key(s)}" for s in settings.symbols] if by_symbol else [day.isoformat()]
        return [dg.RunRequest(partition_key=key, run_key=key) for key in keys]

    return _schedule


def schedules(settings: Settings) -> list:
    """The daily and weekly cadence of the loop, from the settings; all RUNNING by default."""
    return [
        daily_partition_schedule(market_data_daily, "market_data_daily_schedule", settings.cron_market_data,
                                 settings, by_symbol=True),
        daily_partition_schedule(ml_features_job, "ml_features_job_schedule", settings.cron_features, settings),
        daily_partition_schedule(target_weights_job, "target_weights_job_schedule", settings.cron_target_weights,
                                 settings),
        dg.ScheduleDefinition(name="daily_reports_schedule", job=daily_reports, cron_schedule=settings.cron_reports,
                              execution_timezone="UTC", default_status=RUNNING),
        dg.ScheduleDefinition(name="retrain_nightly", job=retrain_job, cron_schedule=settings.cron_retrain,
                              execution_timezone="UTC", default_status=RUNNING,
                              run_config=_retrain_config(settings.retrain_days)),
        # the stream trades each rule-based slot on every symbol: the release gate judges it on every symbol
        dg.ScheduleDefinition(name="tune_weekly", job=tune_job, cron_schedule=settings.cron_tune,
                              execution_timezone="UTC", default_status=RUNNING,
                              run_config={"ops": {"strategy_tuning": {"config": {
                                  "symbol": settings.symbols[0], "gate_symbols": list(settings.symbols)}}}}),
        # after the day closes; its marks are the day's last bars, which the stream stores as they close
        daily_partition_schedule(strategy_performance_job, "strategy_performance_job_schedule",
                                 settings.cron_strategy_performance, settings),
        dg.ScheduleDefinition(name="data_maintenance_schedule", job=data_maintenance,
                              cron_schedule=settings.cron_maintenance, execution_timezone="UTC",
                              default_status=RUNNING),
        # hourly by default, so a missed or failed daily optimisation is noticed within the hour it goes stale
        dg.ScheduleDefinition(name="weights_freshness_hourly", job=weights_freshness_job,
                              cron_schedule=settings.cron_weights_freshness, execution_timezone="UTC",
                              default_status=RUNNING),
    ]


# ---- sensors: what reacts -----------------------------------------------------------------------
def decay_sensor(settings: Settings):
    @dg.sensor(name="ml_decay_sensor", job=retrain_job, minimum_interval_seconds=settings.decay_interval_s,
               default_status=SENSOR_RUNNING,
               description="Launch retrain when the champion's live rolling Sharpe / hit rate falls below its "
                           "threshold or its features drift (population stability index) past the threshold.")
    def ml_decay_sensor(context: dg.SensorEvaluationContext, db: PostgresResource, ml: MLResource):
        from ml.monitoring import DecayThresholds, decay_reasons, retrain_would_repeat
        from ml.online import KIND as ONLINE

        # account/strategy come from the resource so a deployment (or a test) can watch its own trades
        reasons = decay_reasons(db.engine(), ml, DecayThresholds(strategy=ml.monitor_strategy),
                                account=ml.monitor_account or None)
        if not reasons:
            return dg.SkipReason("champion performance and feature drift within thresholds")
        repeat = retrain_would_repeat(db.engine(), ml, exclude_kind=ONLINE)
        if repeat is not None:
            return dg.SkipReason(f"{'; '.join(reasons)}; no retrain yet: {repeat}")
        hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H")
        return dg.RunRequest(run_key=f"decay-{hour}", run_config=_retrain_config(settings.retrain_days),
                             tags={"tradeloop/retrain_reason": "; ".join(reasons)[:200]})

    return ml_decay_sensor


def _today() -> date:
    return datetime.now(timezone.utc).date()


def online_gate_sensor(settings: Settings):
    """An online model's checkpoint becomes the challenger inside the worker (ml/online.py propose); this
    sends it through the same gate as a retrained model, once per version."""
    @dg.sensor(name="online_gate_sensor", job=gate_job, minimum_interval_seconds=settings.bootstrap_interval_s,
               default_status=SENSOR_RUNNING,
               description="Gate (ml_promotion) each online-model checkpoint the stream proposed as challenger.")
    def online_gate(context: dg.SensorEvaluationContext, db: PostgresResource, ml: MLResource):
        from ml.online import KIND
        from storage.ml import undecided_challengers

        with db.begin() as conn:
            versions = undecided_challengers(conn, ml.model_name, KIND)
        if not versions:
            return dg.SkipReason("no online checkpoint waits for the gate")
        # the gate judges the registry's challenger: the newest proposal
        return dg.RunRequest(run_key=f"gate-online-{versions[-1]}",
                             tags={"tradeloop/gate_reason": f"online checkpoint v{versions[-1]}"})

    return online_gate


def bootstrap_days(settings: Settings, today: date) -> list[str]:
    """The complete UTC days the platform needs at first start: the last `bootstrap_days`, not before the
    history start."""
    first = max(date.fromisoformat(settings.history_start), today - timedelta(days=settings.bootstrap_days))
    return [(first + timedelta(days=i)).isoformat() for i in range((today - first).days)]


def bootstrap_sensor(settings: Settings):
    """First start, with no human action: history, then features, then a first model through the gate, the
    first target weights and reports. Each stage waits for the one before; the steady state is the schedules'.
    Run keys make every request once-only, so the sensor can tick often and a restart repeats nothing."""
    from assets.partitions import symbol_key

    @dg.sensor(name="bootstrap_sensor", jobs=[market_data_daily, ml_features_job, retrain_job, target_weights_job,
                                              daily_reports],
               minimum_interval_seconds=settings.bootstrap_interval_s, default_status=SENSOR_RUNNING,
               description="Cold start: backfills the last TRADELOOP_BOOTSTRAP_DAYS days of market data, builds "
                           "their features, trains and gates a first model, computes the first target weights and "
                           "writes the first reports; skips (saying what it waits for) once each stage is done.")
    def bootstrap(context: dg.SensorEvaluationContext):
        days = bootstrap_days(settings, _today())
        if not days:
            return dg.SkipReason(f"no complete day since the history start {settings.history_start} yet")
        instance = context.instance
        market = {f"{d}|{symbol_key(s)}" for d in days for s in settings.symbols}
        missing = sorted(market - set(instance.get_materialized_partitions(ohlcv_clean.key)))
        if missing:
            return [dg.RunRequest(job_name=market_data_daily.name, partition_key=key, run_key=f"bootstrap-md-{key}")
                    for key in missing]
        missing = sorted(set(days) - set(instance.get_materialized_partitions(ml_features.key)))
        if missing:
            return [dg.RunRequest(job_name=ml_features_job.name, partition_key=d, run_key=f"bootstrap-features-{d}")
                    for d in missing]
        requests = []
        if instance.get_latest_materialization_event(ml_promotion.key) is None:
            requests.append(dg.RunRequest(job_name=retrain_job.name, run_key="bootstrap-retrain",
                                          run_config=_retrain_config(min(settings.retrain_days, len(days))),
                                          tags={"tradeloop/retrain_reason": "first model (bootstrap)"}))
        if days[-1] not in set(instance.get_materialized_partitions(target_weights.key)):
            requests.append(dg.RunRequest(job_name=target_weights_job.name, partition_key=days[-1],
                                          run_key=f"bootstrap-weights-{days[-1]}"))
        if instance.get_latest_materialization_event(tear_sheets.key) is None:
            requests.append(dg.RunRequest(job_name=daily_reports.name, run_key="bootstrap-reports"))
        return requests or dg.SkipReason(f"bootstrap complete: {len(days)} days of history, features, a gated "
                                         f"model, target weights and reports exist")

    return bootstrap


def sensors(settings: Settings) -> list:
    return [bootstrap_sensor(settings), decay_sensor(settings), online_gate_sensor(settings)]
