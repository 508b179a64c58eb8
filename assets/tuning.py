"""Strategy parameter tuning as a Dagster asset: an Optuna study (storage in the platform's PostgreSQL,
schema ``optuna``) over the last ``days`` of one symbol's clean bars, or of the seeded sim market.

The study name defaults to strategy, venue, symbol, objective, history length and the last day of data:
materialising again the same day resumes that study (more trials on the same data); a new day starts a
new study, because trials scored on different data are not comparable.

No ``from __future__ import annotations`` here: Dagster resolves the annotations at definition time.
"""

import json
from datetime import datetime, timezone

import dagster as dg
import polars as pl
import sqlalchemy as sa

from assets.ml import NS, MLResource
from assets.resources import PostgresResource
from storage.market_data import last_clean_ts, load_clean_bars


class TuningConfig(dg.Config):
    strategy: str = "sma_cross"
    """Registered strategy name (``tradeloop backtest --help`` lists them)."""
    n_trials: int = 30
    objective: str = "sharpe"
    """``sharpe`` (TPE, pruned) or ``sharpe_vs_drawdown`` (NSGA-II, Pareto front)."""
    symbol: str = "BTC/USDT"
    days: int = 7
    """Days of 1m history, ending at the last stored bar (or the sim market's first ``days`` days)."""
    source: str = "clean"
    """``clean``: market_data_clean of the ml resource's exchange; ``sim``: the seeded sim market."""
    n_windows: int = 4
    seed: int = 0
    fee_bps: float = 5.0
    space_json: str = ""
    """Narrowed ranges as JSON, e.g. ``{"fast": [2, 60], "slow": [20, 400]}``; empty: declared ranges."""
    study_name: str = ""
    """Empty: derived from the settings above and the data's last day (see module doc)."""


def _bars(conn: sa.Connection, ml: MLResource, config: TuningConfig) -> pl.DataFrame:
    if config.days < 1:
        raise dg.Failure(description=f"TuningConfig.days must be >= 1, got {config.days}")
    if config.source == "sim":
        from trading.backtest.data import DataError, load_sim_bars

        try:
            return load_sim_bars(config.symbol, config.days * 1440, interval="1m")
        except DataError as exc:
            raise dg.Failure(description=str(exc)) from exc
    if config.source != "clean":
        raise dg.Failure(description=f"TuningConfig.source must be 'clean' or 'sim', got {config.source!r}")
    last = last_clean_ts(conn, ml.exchange, config.symbol, "1m")
    if last is None:
        raise dg.Failure(description=f"market_data_clean has no 1m bars of {config.symbol} on {ml.exchange}: "
                                     "materialize ohlcv_clean first, or set source: sim")
    # one bar past the last one: the bound goes through float seconds, so a 1 ns margin would be lost
    end = (int(last.timestamp()) + 60) * NS
    bars = load_clean_bars(conn, exchange=ml.exchange, symbols=[config.symbol], interval="1m",
                           start_ns=end - config.days * 86_400 * NS, end_ns=end)
    return bars.rename({"ts": "timestamp"}).select("timestamp", "open", "high", "low", "close", "volume", "symbol")


@dg.asset(group_name="ml", kinds={"optuna", "postgres"},
          description="An Optuna study of a strategy's parameters through the backtester (walk-forward windows, "
                      "pruning; or Sharpe vs drawdown with a Pareto front). Best params / front in the metadata, "
                      "the study in Postgres (schema optuna), a summary run in MLflow.")
def strategy_tuning(context: dg.AssetExecutionContext, config: TuningConfig, db: PostgresResource,
                    ml: MLResource) -> dg.MaterializeResult:
    from ml.tuning import TuningError, result_markdown, tune_strategy

    try:
        space = json.loads(config.space_json) if config.space_json.strip() else None
    except json.JSONDecodeError as exc:
        raise dg.Failure(description=f"TuningConfig.space_json is not JSON: {exc}") from exc
    if space is not None and not isinstance(space, dict):
        raise dg.Failure(description=f"TuningConfig.space_json must be a JSON object, got {type(space).__name__}")
    with db.begin() as conn:
        bars = _bars(conn, ml, config)
    if bars.height == 0:
        raise dg.Failure(description=f"no bars of {config.symbol} to tune on")
    last_day = datetime.fromtimestamp(int(bars["timestamp"][-1]) / NS, tz=timezone.utc).strftime("%Y-%m-%d")
    venue = "sim" if config.source == "sim" else ml.exchange
    name = config.study_name or (f"{config.strategy}:{venue}:{config.symbol}:{config.objective}:"
                                 f"{config.days}d:{last_day}")
    try:
        result = tune_strategy(config.strategy, bars, config.n_trials, db.url, name, objective=config.objective,
                               n_windows=config.n_windows, seed=config.seed, space=space, fee_bps=config.fee_bps,
                               tracking_uri=ml.tracking_uri or None)
    except TuningError as exc:
        raise dg.Failure(description=f"tuning failed: {exc}") from exc
    context.log.info(f"study {name}: {result.n_trials} trials ({result.n_pruned} pruned, {result.n_failed} failed)")
    meta = {"study_name": name, "bars": bars.height, "n_trials": result.n_trials, "n_complete": result.n_complete,
            "n_pruned": result.n_pruned, "n_failed": result.n_failed,
            "result": dg.MetadataValue.md(result_markdown(result)),
            "mlflow_run_id": result.mlflow_run_id or ""}
    if result.best_params is not None:
        meta["best_params"] = dg.MetadataValue.json(result.best_params)
        meta["best_sharpe"] = result.best_value
    if result.default_value is not None:
        meta["default_sharpe"] = result.default_value
    if result.pareto:
        meta["pareto_front"] = dg.MetadataValue.json(result.pareto)
    return dg.MaterializeResult(metadata=meta)
