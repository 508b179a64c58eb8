"""Self-improvement loop as Dagster assets: features -> labels -> challenger -> promotion.

* ``ml_features`` / ``ml_labels``: daily partitions over all symbols, read market_data_clean, write the
  versioned tables ml_features / ml_labels (replace the partition's rows in one transaction).
* ``ml_challenger``: trains on the last ``days`` of stored features/labels, registers the challenger.
* ``ml_promotion``: backtests challenger and champion on the same recent holdout window, moves the
  ``champion`` alias only when the gate passes, and records the decision with its evidence (metadata).
* asset check ``promotion_gate`` on ``ml_promotion``: only checks (re-running it moves nothing) that the
  recorded decision follows from its evidence and that the registry's champion is the one it left.
* job ``retrain`` (UI / ``tradeloop retrain``), job ``ml_features_job``, nightly schedules, and a sensor
  that launches ``retrain`` when the champion's live performance decays or its features drift.

No ``from __future__ import annotations`` here: Dagster resolves the annotations at definition time.
"""

import json
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import polars as pl
import sqlalchemy as sa

from assets.partitions import DAILY
from assets.resources import PostgresResource
from ml.features import FeatureParams
from storage import ml as ml_store
from storage.market_data import load_clean_bars

NS = 1_000_000_000
ML_PARTITIONS = DAILY  # by UTC day, from the settings when the code location loads (assets/partitions.py)


class MLResource(dg.ConfigurableResource):
    """Where models go and how features, labels, training and the gate are parameterised."""

    tracking_uri: str
    model_name: str = "tradeloop-signal"
    exchange: str = "sim"
    symbols: list[str] = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    interval: str = FeatureParams.interval
    warmup_bars: int = 1440
    # the feature parameters' defaults are ml.features.FeatureParams' (their one definition)
    cross_window: int = FeatureParams.cross_window
    regime_window: int = FeatureParams.regime_window
    regime_min_fit: int = FeatureParams.regime_min_fit
    regime_refit: str = FeatureParams.regime_refit
    horizon: int = 30
    barrier_k: float = 2.0
    n_splits: int = 3
    embargo_bars: int = 30
    holdout_frac: float = 0.2
    min_fold_rows: int = 200
    ag_time_limit: float = 60.0
    use_autogluon: bool = True
    sharpe_margin: float = 0.1
    max_drawdown_limit: float = 0.05
    min_sharpe: float = 0.0
    min_t_stat: float = 2.0
    """Standard errors by which the challenger must beat flat / the champion (ml.registry.GateConfig)."""
    trade_params: dict = {}
    """MLSignal parameters the stream's ML slot trades with (thresholds, allow_short); {}: the defaults, as
    the default slot ml_champion (streaming/config.py). The gate backtests the models with them (ml/gate.py)."""
    starting_cash: float = 100_000.0
    """The account's starting cash: the gate's backtest starts with it (sizing is a fraction of equity)."""
    slippage_bps: float = 1.0
    """Slippage the gate's backtest pays on every fill, on top of the stream's fees."""
    monitor_account: str = ""
    """Account whose paper/live trades the decay sensor reads; empty: the settings' account."""
    monitor_strategy: str = ""
    """Stream slot (trades.strategy) of the champion's trades in that account; empty: every slot whose live
    signals name the model, as the stream wrote them."""

    @classmethod
    def from_settings(cls, settings) -> "MLResource":
        """The deployment's resource: registry, model name, exchange and symbols from the settings."""
        ml_slots = [params for name, params in (settings.stream_strategies or {}).values() if name == "ml_signal"]
        return cls(tracking_uri=settings.tracking_uri, model_name=settings.model_name,
                   exchange="sim" if settings.market_source == "sim" else settings.market_source,
                   symbols=list(settings.symbols), trade_params=dict(ml_slots[0]) if ml_slots else {},
                   starting_cash=float(settings.starting_cash))

    def feature_params(self) -> FeatureParams:
        return FeatureParams(self.interval, self.cross_window, self.regime_window, self.regime_min_fit, self.regime_refit)

    def label_params(self):
        from ml.labels import LabelParams

        return LabelParams(self.horizon, self.barrier_k)

    def feature_set(self) -> str:
        from ml.features import feature_set_hash

        return feature_set_hash(self.feature_params(), list(self.symbols))

    def train_config(self):
        from ml.training import TrainConfig

        rule = self.live_rule().strategy_params()
        return TrainConfig(n_splits=self.n_splits, embargo_bars=self.embargo_bars, holdout_frac=self.holdout_frac,
                           min_fold_rows=self.min_fold_rows, ag_time_limit=self.ag_time_limit,
                           interval=self.interval, use_autogluon=self.use_autogluon,
                           long_threshold=rule["long_threshold"], short_threshold=rule["short_threshold"],
                           allow_short=rule["allow_short"])

    def gate_config(self):
        from ml.registry import GateConfig

        return GateConfig(self.sharpe_margin, self.max_drawdown_limit, self.min_sharpe, self.min_t_stat)

    def live_rule(self):
        from ml.gate import LiveRule

        return LiveRule(dict(self.trade_params), cash=self.starting_cash, slippage_bps=self.slippage_bps)


# ---- storage helpers ----------------------------------------------------------------------------

def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc)


def _day_bounds(context: dg.AssetExecutionContext) -> tuple[int, int]:
    day = datetime.fromisoformat(context.partition_key).replace(tzinfo=timezone.utc)
    start = int(day.timestamp()) * NS
    return start, start + 86_400 * NS


def _require_bars(bars: pl.DataFrame, ml: MLResource, start: int, end: int) -> None:
    have = set(bars.filter((pl.col("ts") >= start) & (pl.col("ts") < end))["symbol"].unique().to_list())
    missing = [s for s in ml.symbols if s not in have]
    if missing:
        raise dg.Failure(description=(
            f"market_data_clean has no {ml.interval} bars of {missing} on {ml.exchange} between {_ts(start)} and "
            f"{_ts(end)}: materialize ohlcv_clean for that day first"))


@dg.asset(partitions_def=ML_PARTITIONS, group_name="ml", kinds={"postgres", "polars"},
          description="Point-in-time features of every clean bar of the day (table ml_features, by feature set hash).")
def ml_features(context: dg.AssetExecutionContext, db: PostgresResource, ml: MLResource) -> dg.MaterializeResult:
    from ml.features import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureError, compute_features
    from trading.marketdata.timeframes import interval_ns

    start, end = _day_bounds(context)
    lookback = start - ml.warmup_bars * interval_ns(ml.interval)  # warm-up: same history for every rerun
    with db.begin() as conn:
        bars = load_clean_bars(conn, exchange=ml.exchange, symbols=list(ml.symbols), interval=ml.interval,
                               start_ns=lookback, end_ns=end)
    _require_bars(bars, ml, start, end)
    try:
        feats = compute_features(bars, ml.feature_params())
    except FeatureError as exc:
        raise dg.Failure(description=f"features of {context.partition_key}: {exc}") from exc
    day = feats.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    fs = ml.feature_set()
    with db.begin() as conn:
        n_rows = ml_store.replace_features(conn, fs, FEATURE_SET_VERSION, FEATURE_NAMES, ml.feature_params().as_dict(),
                                           ml.symbols, ml.exchange, start, end, day)
    complete = day.drop_nulls().filter(~pl.any_horizontal(pl.col(FEATURE_NAMES).is_nan())).height
    return dg.MaterializeResult(metadata={"rows": n_rows, "complete_rows": complete, "feature_set": fs,
                                          "features": dg.MetadataValue.json(FEATURE_NAMES)})


@dg.asset(partitions_def=ML_PARTITIONS, group_name="ml", kinds={"postgres"},
          description="Forward returns and triple-barrier labels of the day's bars (table ml_labels); bars whose "
                      "horizon runs past the stored data get their label when a later day is materialised and this reruns.")
def ml_labels(context: dg.AssetExecutionContext, db: PostgresResource, ml: MLResource) -> dg.MaterializeResult:
    from ml.labels import compute_labels
    from trading.marketdata.timeframes import interval_ns

    start, end = _day_bounds(context)
    iv = interval_ns(ml.interval)
    lp = ml.label_params()
    with db.begin() as conn:
        bars = load_clean_bars(conn, exchange=ml.exchange, symbols=list(ml.symbols), interval=ml.interval,
                               start_ns=start - lp.vol_window * 2 * iv, end_ns=end + (lp.horizon + 1) * iv)
    _require_bars(bars, ml, start, end)
    labels = compute_labels(bars, lp).filter((pl.col("ts") >= start) & (pl.col("ts") < end)).drop_nulls()
    ls = lp.label_set_hash()
    with db.begin() as conn:
        ml_store.replace_labels(conn, ls, ml.exchange, start, end, labels)
    counts = {str(k): int(v) for k, v in labels.group_by("tb_label").len().iter_rows()}
    return dg.MaterializeResult(metadata={"rows": labels.height, "label_set": ls,
                                          "class_counts": dg.MetadataValue.json(counts)})


def load_training_frame(conn: sa.Connection, ml: MLResource, start_ns: int, end_ns: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    from ml.features import FEATURE_NAMES

    feats = ml_store.load_features(conn, ml.feature_set(), ml.exchange, FEATURE_NAMES, start_ns, end_ns)
    labels = ml_store.load_labels(conn, ml.label_params().label_set_hash(), ml.exchange, start_ns, end_ns)
    return feats, labels


class RetrainConfig(dg.Config):
    days: int = 7
    """Train on this many days of stored features/labels, ending at ``end_date``."""
    end_date: str = ""
    """Exclusive end day (YYYY-MM-DD); empty: the day after the last stored feature row."""


def _training_window(conn: sa.Connection, ml: MLResource, config: RetrainConfig) -> tuple[int, int]:
    if config.end_date:
        end = int(datetime.fromisoformat(config.end_date).replace(tzinfo=timezone.utc).timestamp()) * NS
    else:
        end = ml_store.features_end_ns(conn, ml.feature_set(), ml.exchange)
        if end is None:
            raise dg.Failure(description=f"no stored features of feature set {ml.feature_set()} on {ml.exchange}: "
                                         "materialize ml_features and ml_labels first")
    if config.days < 1:
        raise dg.Failure(description=f"RetrainConfig.days must be >= 1, got {config.days}")
    return end - config.days * 86_400 * NS, end


@dg.asset(deps=[ml_features, ml_labels], group_name="ml", kinds={"mlflow", "autogluon", "lightgbm"},
          description="A new model trained on recent features/labels, registered in MLflow with the challenger alias.")
def ml_challenger(context: dg.AssetExecutionContext, config: RetrainConfig, db: PostgresResource,
                  ml: MLResource) -> dg.MaterializeResult:
    from storage.ml import record_model
    from ml.training import TrainingError, build_dataset, train_and_register

    with db.begin() as conn:
        start, end = _training_window(conn, ml, config)
        feats, labels = load_training_frame(conn, ml, start, end)
    try:
        ds = build_dataset(feats, labels)
        result = train_and_register(ds, ml.train_config(), ml.tracking_uri, ml.model_name, ml.feature_set(),
                                    ml.label_params().label_set_hash(), ml.feature_params())
    except TrainingError as exc:
        raise dg.Failure(description=f"retrain failed, nothing registered: {exc}") from exc
    metrics = {**result.metrics, "window_start_ns": start, "window_end_ns": end}
    try:
        with db.begin() as conn:
            record_model(conn, ml.model_name, result.version, result.run_id, result.training_data_hash,
                         "challenger", metrics)
            ml_store.audit(conn, "train", f"model:{ml.model_name}",
                           f"trained v{result.version} ({result.kind}) on {metrics['rows']} rows",
                           {"version": result.version, "run_id": result.run_id, "kind": result.kind,
                            "dagster_run_id": context.run.run_id, **metrics}, ml.model_name, result.version)
    except Exception:
        from mlflow import MlflowClient

        # no half-registered model: the registry forgets the version Postgres could not record
        MlflowClient(tracking_uri=ml.tracking_uri, registry_uri=ml.tracking_uri).delete_model_version(
            ml.model_name, result.version)
        raise
    context.log.info(f"registered {ml.model_name} v{result.version} ({result.kind}) as challenger")
    return dg.MaterializeResult(metadata={
        "version": result.version, "run_id": result.run_id, "model_kind": result.kind,
        "training_data_hash": result.training_data_hash, "rows": metrics["rows"],
        "metrics": dg.MetadataValue.json(metrics),
    })


def _window_dataset(conn: sa.Connection, ml: MLResource, start: int, end: int):
    """The window's features/labels and its clean bars (the gate trades the scores on them)."""
    from ml.training import build_dataset

    feats, labels = load_training_frame(conn, ml, start, end)
    bars = load_clean_bars(conn, exchange=ml.exchange, symbols=list(ml.symbols), interval=ml.interval,
                           start_ns=start, end_ns=end)
    return build_dataset(feats, labels), bars


def evaluate_version(ml: MLResource, version: str, ds, bars: pl.DataFrame):
    """The version's scores of the window traded by the live rule (ml.gate.trade_scores): its evidence."""
    from ml.gate import trade_scores
    from ml.serving import load_version

    try:
        model = load_version(ml.model_name, version, ml.tracking_uri)
        scores = np.asarray(model.predict(ds.X), dtype=float)
    except Exception as exc:
        raise dg.Failure(description=f"{ml.model_name} v{version} failed to load or predict: {type(exc).__name__}: {exc}") from exc
    return trade_scores(bars, ds.symbol, ds.t0, scores, ml.live_rule(), exchange=ml.exchange)


@dg.asset(deps=[ml_challenger], group_name="ml", kinds={"mlflow", "postgres"},
          description="The promotion decision: challenger and champion backtested on the challenger's unseen holdout "
                      "window, traded by the stream's rule (long-only by default), sizing, fees and slippage; the "
                      "champion alias moves to the challenger only if it beats the champion's Sharpe by "
                      "the margin (and by min_t_stat standard errors) within the drawdown limit. Metadata: the decision, its evidence and the versions.")
def ml_promotion(context: dg.AssetExecutionContext, db: PostgresResource, ml: MLResource) -> dg.MaterializeResult:
    from ml.registry import CHALLENGER, CHAMPION, alias_version, apply_gate, gate_decision

    challenger = alias_version(ml.tracking_uri, ml.model_name, CHALLENGER)
    if challenger is None:
        raise dg.Failure(description=f"{ml.model_name} has no challenger to gate")
    champion = alias_version(ml.tracking_uri, ml.model_name, CHAMPION)
    if champion == challenger:
        decision = {"passed": True, "reason": "already champion", "challenger_version": challenger,
                    "champion_version": champion}
        return _promotion_result(decision, challenger, champion, champion)
    with db.begin() as conn:
        row = ml_store.model_metrics(conn, ml.model_name, challenger)
        if row is None:
            raise dg.Failure(description=f"{ml.model_name} v{challenger} is not in ml_models")
        start, end = int(row["holdout_start_ns"]), int(row["window_end_ns"])
        ds, bars = _window_dataset(conn, ml, start, end)
    ch = evaluate_version(ml, challenger, ds, bars)
    cp = evaluate_version(ml, champion, ds, bars) if champion is not None else None
    if cp is not None:
        from ml.gate import paired_t_stat

        ch.metrics["paired_t_stat"] = paired_t_stat(cp, ch)
    decision = {**gate_decision(ch.metrics, cp.metrics if cp else None, ml.gate_config()), "window": [start, end],
                "rule": {**ml.live_rule().strategy_params(), "fraction_per_symbol": ml.live_rule().fraction_used(),
                         "slippage_bps": ml.slippage_bps, "fees": "the stream's FeeSchedule"},
                "challenger_version": challenger, "champion_version": champion}
    promoted = apply_gate(db.engine(), ml.tracking_uri, ml.model_name, challenger, decision)
    context.log.info(f"gate {ml.model_name} v{challenger}: {'PROMOTED' if promoted else 'rejected'}: {decision['reason']}")
    return _promotion_result(decision, challenger, champion, challenger if promoted else champion)


def _promotion_result(decision: dict, challenger: str, before: str | None, after: str | None) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={
        "promoted": bool(decision["passed"]) and before != after,
        "reason": decision["reason"],
        "challenger_version": challenger, "champion_before": str(before), "champion_after": str(after),
        "decision": dg.MetadataValue.json(json.loads(json.dumps(decision, default=str))),
    })


@dg.asset_check(asset=ml_promotion, name="promotion_gate", blocking=False,
                description="Checks only, moves nothing: the recorded decision follows from its evidence under the "
                            "gate config, and the registry's champion is the one the decision left.")
def promotion_gate(context: dg.AssetCheckExecutionContext, ml: MLResource) -> dg.AssetCheckResult:
    from ml.registry import CHAMPION, alias_version, promotion_problems

    event = context.instance.get_latest_materialization_event(ml_promotion.key)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"problem": "ml_promotion has never been materialised"})
    recorded = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    problems = promotion_problems(recorded, ml.gate_config(), alias_version(ml.tracking_uri, ml.model_name, CHAMPION))
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.WARN, metadata={
        "problems": dg.MetadataValue.json(problems), "challenger_version": recorded.get("challenger_version"),
        "champion_after": recorded.get("champion_after"), "reason": recorded.get("reason", ""),
    })
