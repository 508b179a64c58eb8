"""Strategy parameter tuning as a Dagster asset: an Optuna study (storage in the platform's PostgreSQL,
schema ``optuna``) over the last ``days`` of one symbol's clean bars, or of the seeded sim market.

The study name defaults to strategy, venue, symbol, objective, history length and the last day of data:
materialising again the same day resumes that study (more trials on the same data); a new day starts a
new study, because trials scored on different data are not comparable.

No ``from __future__ import annotations`` here: Dagster resolves the annotations at definition time.
"""

import json
import time
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
    account: str = ""
    """The trading account whose releases the gate decides (empty: TRADELOOP_ACCOUNT, the stream's)."""
    gate: bool = True
    """Tune on all but the most recent ``holdout_frac`` of the bars, register the best parameters as a candidate
    release and let the release gate (trading/strategies/releases.py) promote or refuse it against the running
    release on the held-out bars. False: tune on every bar and record nothing but the study."""
    holdout_frac: float = 0.3
    """Share of the bars (the most recent) the tuning never sees: the gate's out-of-sample part."""
    gate_windows: int = 3
    """Walk-forward test windows of the gate in the held-out bars."""
    sharpe_margin: float = 0.0
    """The candidate's mean out-of-sample Sharpe must beat the running release's by more than this."""
    min_win_fraction: float = 0.5
    """Share of the gate's windows in which the candidate must have the higher Sharpe."""
    max_drawdown_limit: float = 0.25
    """Largest drawdown (positive fraction) the candidate may have in any gate window."""
    slippage_bps: float = 1.0
    """Slippage added to every taker fill in the gate, on top of the paper venue's fees and impact."""
    gate_min_trades: int = 5
    """Fewest trades the candidate must make over the gate's windows (standing aside is no evidence)."""
    gate_symbols: list[str] = []
    """Symbols the gate trades both parameter sets on, each sized as the stream sizes it, Sharpe averaged per
    window (the stream runs a slot on every symbol of TRADELOOP_SYMBOLS). Empty: the tuned symbol only."""


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
          check_specs=[dg.AssetCheckSpec("release_gate", asset="strategy_tuning",
                                         description="The release decision follows from its evidence and the "
                                                     "live release in strategy_releases is the one it left.")],
          description="An Optuna study of a strategy's parameters through the backtester (walk-forward windows, "
                      "pruning; or Sharpe vs drawdown with a Pareto front). Best params / front in the metadata, "
                      "the study in Postgres (schema optuna), a summary run in MLflow. With the gate on, the best "
                      "becomes a candidate release, promoted only if it beats the running release out of sample "
                      "(strategy_releases, audit_log).")
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
    gate_cfg = _gate_config(config)
    tuned = bars
    if config.gate:
        from trading.strategies.releases import ReleaseGateError, split_for_tuning

        try:
            tuned = bars.head(split_for_tuning(bars.height, gate_cfg))
        except ReleaseGateError as exc:
            raise dg.Failure(description=f"release gate: {exc}") from exc
    last_day = datetime.fromtimestamp(int(tuned["timestamp"][-1]) / NS, tz=timezone.utc).strftime("%Y-%m-%d")
    venue = "sim" if config.source == "sim" else ml.exchange
    name = config.study_name or (f"{config.strategy}:{venue}:{config.symbol}:{config.objective}:"
                                 f"{config.days}d:{last_day}")
    try:
        result = tune_strategy(config.strategy, tuned, config.n_trials, db.url, name, objective=config.objective,
                               n_windows=config.n_windows, seed=config.seed, space=space, fee_bps=config.fee_bps,
                               tracking_uri=ml.tracking_uri or None)
    except TuningError as exc:
        raise dg.Failure(description=f"tuning failed: {exc}") from exc
    context.log.info(f"study {name}: {result.n_trials} trials ({result.n_pruned} pruned, {result.n_failed} failed)")
    meta = {"study_name": name, "bars": bars.height, "tuned_bars": tuned.height, "n_trials": result.n_trials, "n_complete": result.n_complete,
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
    if not config.gate:
        return dg.MaterializeResult(metadata=meta, check_results=[dg.AssetCheckResult(
            check_name="release_gate", passed=True, metadata={"decision": "gate off (TuningConfig.gate=false)"})])
    decision = _gate(context, db, ml, config, gate_cfg, result, bars, tuned, venue)
    meta.update({f"release_{k}": v for k, v in decision.items() if k != "evidence"})
    context.log.info(f"release gate: {decision['decision']} ({decision['reason']})")
    return dg.MaterializeResult(metadata=meta, check_results=[_gate_check(decision, gate_cfg, config.strategy, db)])


def _account(config: TuningConfig) -> str:
    from deploy.settings import get_settings

    return config.account or get_settings().account


def _gate_config(config: TuningConfig):
    from trading.strategies.releases import ReleaseGateConfig, ReleaseGateError

    cfg = ReleaseGateConfig(holdout_frac=config.holdout_frac, n_windows=config.gate_windows,
                            sharpe_margin=config.sharpe_margin, min_win_fraction=config.min_win_fraction,
                            max_drawdown_limit=config.max_drawdown_limit, slippage_bps=config.slippage_bps,
                            min_trades=config.gate_min_trades)
    try:
        cfg.check()
    except ReleaseGateError as exc:
        raise dg.Failure(description=f"TuningConfig: {exc}") from exc
    return cfg


def _gate(context, db: PostgresResource, ml: MLResource, config: TuningConfig, gate_cfg, result, bars: pl.DataFrame,
          tuned: pl.DataFrame, venue: str) -> dict:
    """The tuned best becomes a candidate release, and the gate promotes or refuses it against the running
    release on the bars the study never saw.  Decision and audit row in one transaction."""
    from storage import releases as rel
    from trading.strategies import get_strategy
    from trading.strategies.releases import ReleaseGateError, run_gate

    best = result.best_params if result.best_params is not None else (result.pareto[0]["params"] if result.pareto else None)
    if best is None:
        return {"decision": "no candidate", "reason": "no complete trial", "version": 0, "running_version": 0}
    cls = get_strategy(config.strategy)
    candidate = cls.validate_params(dict(best))
    actor = f"dagster:{context.run.run_id}"
    account = _account(config)
    with db.begin() as conn:
        live = rel.live_release(conn, account, config.strategy)
        running = cls.validate_params(live.params) if live else {k: p.default for k, p in cls.params.items()}
        running_label = f"v{live.version}" if live else "declared defaults (no live release yet)"
        if candidate == running:
            reason = f"the tuned best equals the running release ({running_label}): nothing to gate"
            rel.audit(conn, account, "release_gate_skipped", config.strategy, actor, reason, {"params": candidate},
                       time.time_ns())
            return {"decision": "unchanged", "reason": reason, "version": live.version if live else 0,
                    "running_version": live.version if live else 0}
    gate_bars: pl.DataFrame | dict = bars
    if config.gate_symbols:
        gate_bars = {config.symbol: bars}
        with db.begin() as conn:
            for sym in config.gate_symbols:
                if sym not in gate_bars:
                    gate_bars[sym] = _bars(conn, ml, config.model_copy(update={"symbol": sym}))
    try:
        gate = run_gate(config.strategy, candidate, running, gate_bars, gate_cfg)
    except ReleaseGateError as exc:
        raise dg.Failure(description=f"release gate: {exc}") from exc
    first, last = (int(tuned["timestamp"][0]), int(tuned["timestamp"][-1]))
    evidence = {"study_name": result.study_name, "objective": result.objective, "best_in_sample": result.best_value,
                "tuned_on": {"venue": venue, "symbol": config.symbol, "bars": tuned.height, "first_ts": first,
                             "last_ts": last}, "gate_symbols": sorted(gate_bars) if isinstance(gate_bars, dict)
                                                               else [config.symbol], "mlflow_run_id": result.mlflow_run_id, "running": running_label,
                "running_params": running, "gate": gate}
    with db.begin() as conn:
        cand = rel.create_release(conn, account, config.strategy, candidate, evidence,
                                  source=f"tune:{result.study_name}")
        if gate["passed"]:
            rel.promote(conn, account, config.strategy, cand.version, actor=actor, reason=gate["reason"],
                        evidence={"gate": {k: v for k, v in gate.items() if k not in ("candidate", "running")}})
        else:
            rel.refuse(conn, account, config.strategy, cand.version, actor=actor, reason=gate["reason"])
        live_after = rel.live_release(conn, account, config.strategy)
    return {"decision": "promoted" if gate["passed"] else "refused", "reason": gate["reason"], "account": account,
            "version": cand.version, "running_version": live.version if live else 0,
            "live_after": live_after.version if live_after else 0,
            "mean_sharpe_candidate": gate.get("mean_sharpe_candidate", float("nan")),
            "mean_sharpe_running": gate.get("mean_sharpe_running", float("nan")),
            "windows": dg.MetadataValue.json({"candidate": gate["candidate"], "running": gate["running"]}),
            "params": dg.MetadataValue.json(candidate), "evidence": gate}


def _gate_check(decision: dict, gate_cfg, strategy: str, db: PostgresResource) -> dg.AssetCheckResult:
    """Checks, moves nothing: the decision follows from its evidence under the gate's rule, and the table's
    live release is the one the decision left."""
    from storage import releases as rel
    from trading.strategies.releases import gate_release

    problems = []
    gate = decision.get("evidence")
    if gate is not None:
        again = gate_release(gate["candidate"], gate["running"], gate_cfg)
        if again["passed"] != (decision["decision"] == "promoted"):
            problems.append(f"the evidence gives passed={again['passed']}, the decision was {decision['decision']}")
        expected = decision["version"] if decision["decision"] == "promoted" else decision["running_version"]
        with db.begin() as conn:
            live = rel.live_release(conn, decision["account"], strategy)
        now = live.version if live else 0
        if now != expected:
            problems.append(f"the decision should leave v{expected} live, strategy_releases has v{now}")
    return dg.AssetCheckResult(check_name="release_gate", passed=not problems, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"decision": decision["decision"], "reason": decision["reason"],
                                         "problems": dg.MetadataValue.json(problems)})
