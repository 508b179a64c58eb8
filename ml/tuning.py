"""Optuna studies: strategy parameters through the backtester, LightGBM baseline hyperparameters on the
purged walk-forward folds. Studies live in PostgreSQL (optuna's RDBStorage), resumable by name, with
pruning (single objective) and a multi-objective option (Sharpe vs drawdown, NSGA-II, Pareto front).

Storage: optuna manages its own tables *and its own Alembic ``alembic_version`` table*. The platform's
migrations keep theirs in ``public``; sharing it would make optuna read the platform's revision and
refuse the schema (or stamp over it). So optuna's tables live in a dedicated schema (``optuna`` by
default) of the same database, selected through the connection's ``search_path``.

Objectives (both directions explicit, so a Pareto front reads without guessing):
* ``sharpe``: maximise the mean annualised Sharpe over the evaluation windows/folds. Intermediate values
  (the running mean after each window) are reported so MedianPruner stops a trial that is already worse
  than the median of earlier trials at the same window.
* ``sharpe_vs_drawdown``: maximise the mean Sharpe, minimise the worst drawdown (a positive fraction).
  Optuna does not prune multi-objective trials (``Trial.report`` is single-objective only), so every
  trial runs all windows.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import polars as pl


OBJECTIVES = ("sharpe", "sharpe_vs_drawdown")
DEFAULT_SCHEMA = "optuna"
EXPERIMENT = "tradeloop-tuning"


class TuningError(ValueError):
    """A study that cannot be run as asked (bad name, range, objective, data or a mismatched resume)."""


@dataclass
class TuneResult:
    study_name: str
    kind: str  # "strategy" or "model"
    target: str  # strategy name or "lightgbm"
    objective: str
    n_trials: int  # all trials in the study (a resumed study counts earlier runs too)
    n_complete: int
    n_pruned: int
    n_failed: int
    best_params: dict[str, Any] | None  # single objective: the best trial
    best_value: float | None
    pareto: list[dict[str, Any]] = field(default_factory=list)  # [{number, params, sharpe, max_drawdown}]
    default_value: float | None = None  # the same objective for the declared defaults (strategy studies)
    mlflow_run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- storage ----------------------------------------------------------------------------------------

def make_storage(url: str, schema: str = DEFAULT_SCHEMA):
    """Optuna RDBStorage on the platform's PostgreSQL, isolated in ``schema`` (created if missing)."""
    import optuna
    import sqlalchemy as sa

    if not url:
        raise TuningError("no storage URL: pass the PostgreSQL SQLAlchemy URL (DATABASE_URL)")
    if not schema.isidentifier():
        raise TuningError(f"optuna schema name {schema!r} is not a plain SQL identifier")
    try:
        parsed = sa.engine.make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends: the URL itself is wrong
        raise TuningError(f"storage URL is not a SQLAlchemy URL: {exc}") from None
    if not parsed.get_backend_name().startswith("postgresql"):
        # the schema isolation below is PostgreSQL's search_path; other backends would share alembic_version
        raise TuningError(f"study storage must be PostgreSQL, got {parsed.get_backend_name()!r}")
    from storage import db

    db.ensure_schema(url, schema)
    return optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"options": f"-csearch_path={schema}"}, "pool_pre_ping": True})


def _redacted(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


# ---- search spaces ----------------------------------------------------------------------------------

def _narrowed_params(cls, space: Mapping[str, Any] | None, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The strategy's declared Params, with ``space`` narrowing ranges/choices (never widening them: the
    declared range is what the strategy validates)."""
    from trading.strategies.base import Param

    space = dict(space or {})
    unknown = sorted((set(space) | set(fixed)) - set(cls.params))
    if unknown:
        raise TuningError(f"unknown parameter {unknown[0]!r} for strategy {cls.name!r} "
                          f"(known: {', '.join(sorted(cls.params)) or 'none'})")
    both = sorted(set(space) & set(fixed))
    if both:
        raise TuningError(f"parameter {both[0]!r} is both fixed and searched")
    out: dict[str, Param] = {}
    for name, p in cls.params.items():
        if name in fixed:
            continue
        if name not in space:
            out[name] = p
            continue
        spec = space[name]
        if p.type == "categorical":
            choices = tuple(p.validate(name, c) for c in spec)
            if not choices:
                raise TuningError(f"search space of {name!r} has no choices")
            out[name] = dataclasses.replace(p, choices=choices)
            continue
        if not (isinstance(spec, (list, tuple)) and len(spec) == 2):
            raise TuningError(f"search space of {name!r} must be [low, high], got {spec!r}")
        try:
            lo, hi = p.validate(name, spec[0]), p.validate(name, spec[1])
        except ValueError as exc:
            raise TuningError(f"search space of {name!r} leaves the declared range: {exc}") from None
        if lo > hi:
            raise TuningError(f"search space of {name!r}: low {lo} > high {hi}")
        out[name] = dataclasses.replace(p, low=lo, high=hi)
    for name, p in out.items():
        if p.type != "categorical" and (p.low is None or p.high is None):
            raise TuningError(f"parameter {name!r} of {cls.name!r} declares no range; give one in the search space")
    return out


# ---- studies ----------------------------------------------------------------------------------------

def _check_common(n_trials: int, objective: str) -> None:
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise TuningError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if objective not in OBJECTIVES:
        raise TuningError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def _open_study(storage_url: str, study_name: str, objective: str, seed: int, attrs: dict[str, Any],
                pruner_startup_trials: int, schema: str):
    import optuna

    if not study_name or not study_name.strip():
        raise TuningError("study_name must be a non-empty name (it is how a study is resumed)")
    storage = make_storage(storage_url, schema)
    if objective == "sharpe":
        # Seeded TPE: the same study name, data and seed give the same trials.
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(1, pruner_startup_trials)))
        directions = ["maximize"]
        # n_warmup_steps=0: a trial may be stopped after its first window; a window is already hundreds of bars.
        pruner = optuna.pruners.MedianPruner(n_startup_trials=pruner_startup_trials, n_warmup_steps=0)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
        directions = ["maximize", "minimize"]
        pruner = optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    existing = study.user_attrs
    if existing:
        # Resuming a study with another target/objective would mix incomparable trials under one name.
        diff = {k: (existing.get(k), v) for k, v in attrs.items() if existing.get(k) != v}
        if diff:
            k, (was, now) = next(iter(diff.items()))
            raise TuningError(f"study {study_name!r} exists with {k}={was!r}, this run asks {k}={now!r}: "
                              "use another study name")
    else:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    return study


def _pareto(study) -> list[dict[str, Any]]:
    return [{"number": t.number, "params": dict(t.params), "sharpe": float(t.values[0]),
             "max_drawdown": float(t.values[1])} for t in sorted(study.best_trials, key=lambda t: -t.values[0])]


def _summary(study, kind: str, target: str, objective: str, default_value: float | None) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(1 for t in trials if t.state == s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    best_params = best_value = None
    pareto: list[dict[str, Any]] = []
    if count[TrialState.COMPLETE]:
        if objective == "sharpe":
            best_params, best_value = dict(study.best_trial.params), float(study.best_value)
        else:
            pareto = _pareto(study)
    return TuneResult(study.study_name, kind, target, objective, len(trials), count[TrialState.COMPLETE],
                      count[TrialState.PRUNED], count[TrialState.FAIL], best_params, best_value, pareto, default_value)


def _run_study(study, evaluate: Callable[[Any], list[tuple[float, float]]], objective: str, n_trials: int,
               catch: tuple[type[BaseException], ...]) -> None:
    import optuna

    def obj(trial):
        sharpes: list[float] = []
        dds: list[float] = []
        try:
            scores = evaluate(trial)
        except catch as exc:
            # An invalid combination (fast >= slow...) is a FAILED trial with its reason kept on the trial;
            # NaN is how optuna is told so without a traceback per draw in the log.
            trial.set_user_attr("invalid_params", str(exc))
            return math.nan if objective == "sharpe" else (math.nan, math.nan)
        for step, (sharpe, dd) in enumerate(scores):
            sharpes.append(sharpe)
            dds.append(dd)
            if objective == "sharpe":
                trial.report(float(np.mean(sharpes)), step)
                if trial.should_prune():
                    trial.set_user_attr("windows_evaluated", step + 1)
                    raise optuna.TrialPruned()
        trial.set_user_attr("windows_evaluated", len(sharpes))
        trial.set_user_attr("window_sharpes", sharpes)
        mean_sharpe, worst_dd = float(np.mean(sharpes)), float(max(dds))
        trial.set_user_attr("max_drawdown", worst_dd)
        return mean_sharpe if objective == "sharpe" else (mean_sharpe, worst_dd)

    study.optimize(obj, n_trials=n_trials, gc_after_trial=False)


def _finite(x: float) -> float:
    # A flat window has Sharpe 0 in the metrics; anything non-finite would poison the sampler's model.
    return float(x) if math.isfinite(x) else 0.0


# ---- strategies ---------------------------------------------------------------------------------------

def strategy_windows(n_rows: int, n_windows: int):
    """``n_windows`` consecutive evaluation blocks after one block of history (the first block only warms
    indicators up); the blocks of trading.backtest.walk_forward_windows with train = test."""
    from trading.backtest.walkforward import walk_forward_windows

    if n_windows < 1:
        raise TuningError(f"n_windows must be >= 1, got {n_windows}")
    block = n_rows // (n_windows + 1)
    if block < 50:
        raise TuningError(f"{n_rows} bars give {block}-bar windows for {n_windows} windows; need at least 50 per "
                          "window: load more history or use fewer windows")
    return list(walk_forward_windows(n_rows, block, block))[:n_windows]


def evaluate_strategy(strategy, bars: pl.DataFrame, windows, config) -> list[tuple[float, float]]:
    """(Sharpe, drawdown as a positive fraction) of ``strategy`` on each window, as walk_forward runs it:
    the ``warmup_bars`` before the window are replayed with their decisions held back."""
    return list(_iter_windows(lambda: strategy, bars, windows, config))


def _iter_windows(make, bars: pl.DataFrame, windows, config):
    from trading.backtest.runner import BacktestConfig, run_backtest

    ts = bars["timestamp"]
    for w in windows:
        strat = make()
        strat.reset()  # each window starts from a fresh state, exactly as a separate backtest would
        warm_start = max(0, w.test_start - strat.warmup_bars)
        cfg = BacktestConfig(**{**config.__dict__, "trade_from_ts": int(ts[w.test_start]), "keep_equity": False})
        m = run_backtest(bars.slice(warm_start, w.test_end - warm_start), strat, cfg).metrics
        yield _finite(m["sharpe"]), -_finite(m["max_drawdown"])


def tune_strategy(name: str, bars: pl.DataFrame, n_trials: int, storage_url: str, study_name: str,
                  objective: str = "sharpe", n_windows: int = 4, seed: int = 0,
                  space: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
                  fee_bps: float = 5.0, include_defaults: bool = True, pruner_startup_trials: int = 3,
                  tracking_uri: str | None = None, schema: str = DEFAULT_SCHEMA) -> TuneResult:
    """Tune strategy ``name``'s declared parameters on ``bars`` (one symbol, trading.backtest.data format).

    ``space`` narrows a declared range (``{"fast": [2, 50]}``) or choice list; ``fixed`` pins parameters.
    ``fee_bps`` defaults to 5: tuned without costs, a crossover's best parameters are whatever churns most.
    ``include_defaults`` evaluates the declared defaults as the first trial of a new study, so the best
    result is never worse than what the strategy runs today. Invalid combinations (e.g. fast >= slow) are
    FAILED trials, not crashes.
    """
    from trading.backtest.data import DataError, validate_bars
    from trading.backtest.runner import BacktestConfig
    from trading.strategies import StrategyError, get_strategy

    _check_common(n_trials, objective)
    try:
        cls = get_strategy(name)
    except StrategyError as exc:
        raise TuningError(str(exc)) from None
    if not isinstance(bars, pl.DataFrame) or bars.height == 0:
        raise TuningError("no bars to tune on")
    try:
        bars = validate_bars(bars, source="tuning bars")
    except DataError as exc:
        raise TuningError(str(exc)) from None
    if bars["symbol"].n_unique() != 1:
        raise TuningError(f"tune one symbol at a time, got {bars['symbol'].n_unique()} symbols")
    fixed = dict(fixed or {})
    searched = _narrowed_params(cls, space, fixed)  # names unknown parameters first
    try:
        fixed = {k: cls.params[k].validate(k, v) for k, v in fixed.items()}
    except StrategyError as exc:
        raise TuningError(str(exc)) from None
    if not searched:
        raise TuningError(f"nothing to tune: every parameter of {name!r} is fixed")
    windows = strategy_windows(bars.height, n_windows)
    config = BacktestConfig(fee_bps=fee_bps)
    attrs = {"kind": "strategy", "target": name, "objective": objective, "symbol": bars["symbol"][0],
             "n_windows": n_windows, "fee_bps": fee_bps}
    study = _open_study(storage_url, study_name, objective, seed, attrs, pruner_startup_trials, schema)

    defaults = {k: p.default for k, p in cls.params.items()}
    default_value = None
    try:
        default_scores = evaluate_strategy(cls(**{**defaults, **fixed}), bars, windows, config)
        default_value = float(np.mean([s for s, _ in default_scores]))
    except StrategyError:
        pass  # the defaults combined with ``fixed`` are invalid; there is no default to compare with
    if include_defaults and not study.trials and default_value is not None:
        start = {k: defaults[k] for k in searched}
        inside = all(p.choices and start[k] in p.choices if p.type == "categorical" else p.low <= start[k] <= p.high
                     for k, p in searched.items())
        if inside:
            study.enqueue_trial(start)

    def evaluate(trial):
        params = {k: p.suggest(trial, k) for k, p in searched.items()}
        strat = cls(**params, **fixed)  # ParameterValueError -> a FAILED trial (see _run_study)
        return _iter_windows(lambda: strat, bars, windows, config)

    _run_study(study, evaluate, objective, n_trials, catch=(StrategyError,))
    result = _summary(study, "strategy", name, objective, default_value)
    if tracking_uri:
        result.mlflow_run_id = log_to_mlflow(result, tracking_uri, storage_url, fixed)
    return result


# ---- the LightGBM baseline ------------------------------------------------------------------------------

MODEL_SPACE = {
    # Ranges around TrainConfig's defaults (200 trees, 0.05, 15 leaves) wide enough to matter, narrow
    # enough that a trial fits in seconds on a week of 1m bars.
    "lgbm_estimators": (int, 50, 400),
    "lgbm_learning_rate": (float, 0.01, 0.3),
    "lgbm_num_leaves": (int, 4, 63),
}


def tune_model(ds, n_trials: int, storage_url: str, study_name: str, cfg=None, objective: str = "sharpe",
               seed: int = 0, pruner_startup_trials: int = 3, tracking_uri: str | None = None,
               schema: str = DEFAULT_SCHEMA) -> TuneResult:
    """Tune the LightGBM baseline (``TrainConfig.lgbm_*``) on the purged walk-forward folds of ``ds``
    (an ml.training.Dataset), scored exactly as training's CV scores a model (next-bar strategy Sharpe
    after costs). The holdout window the promotion gate uses is cut off first and never seen here:
    tuning on it would make the gate's comparison optimistic. The best params are TrainConfig fields."""
    from ml.splits import SplitError, holdout_split, purged_walk_forward
    from ml.pyfunc_model import predict_scores
    from ml.training import TrainConfig, TrainingError, evaluate_scores, fit_lightgbm, validate_dataset
    from trading.marketdata.timeframes import interval_ns

    _check_common(n_trials, objective)
    cfg = cfg or TrainConfig(use_autogluon=False)
    try:
        validate_dataset(ds)
        embargo_ns = cfg.embargo_bars * interval_ns(cfg.interval)
        train_idx, _, _ = holdout_split(ds.t0, ds.t1, cfg.holdout_frac, embargo_ns)
        dev = ds.subset(train_idx)
        folds = list(purged_walk_forward(dev.t0, dev.t1, cfg.n_splits, embargo_ns, cfg.min_train_frac, cfg.min_fold_rows))
    except (SplitError, TrainingError) as exc:
        raise TuningError(f"cannot tune on this dataset: {exc}") from None
    attrs = {"kind": "model", "target": "lightgbm", "objective": objective, "rows": int(len(ds.y)),
             "n_splits": cfg.n_splits}
    study = _open_study(storage_url, study_name, objective, seed, attrs, pruner_startup_trials, schema)
    if not study.trials:
        study.enqueue_trial({k: getattr(cfg, k) for k in MODEL_SPACE})  # today's config is the baseline

    def evaluate(trial):
        over = {}
        for k, (typ, lo, hi) in MODEL_SPACE.items():
            over[k] = (trial.suggest_int(k, lo, hi) if typ is int else trial.suggest_float(k, lo, hi, log=True))
        tcfg = dataclasses.replace(cfg, **over)
        for fold in folds:
            tr, te = dev.subset(fold.train), dev.subset(fold.test)
            model = fit_lightgbm(tr, tcfg)
            m, _, _ = evaluate_scores(predict_scores("lightgbm", model, te.X), te, tcfg)
            yield _finite(m["sharpe"]), -_finite(m["max_drawdown"])

    _run_study(study, evaluate, objective, n_trials, catch=())
    result = _summary(study, "model", "lightgbm", objective, None)
    if tracking_uri:
        result.mlflow_run_id = log_to_mlflow(result, tracking_uri, storage_url, {})
    return result


# ---- reporting ------------------------------------------------------------------------------------------

def log_to_mlflow(result: TuneResult, tracking_uri: str, storage_url: str, fixed: Mapping[str, Any]) -> str:
    """One MLflow run per call: the best params (or each Pareto point as a JSON artifact), counts, tags
    naming the study so the run leads back to its trials in Postgres (password hidden)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{result.study_name}-{result.n_trials}") as run:
        mlflow.set_tags({"study_name": result.study_name, "kind": result.kind, "target": result.target,
                         "objective": result.objective, "optuna_storage": _redacted(storage_url)})
        mlflow.log_params({**{f"fixed.{k}": v for k, v in fixed.items()},
                           **{f"best.{k}": v for k, v in (result.best_params or {}).items()}})
        metrics = {"n_trials": result.n_trials, "n_complete": result.n_complete, "n_pruned": result.n_pruned,
                   "n_failed": result.n_failed, "pareto_size": len(result.pareto)}
        if result.best_value is not None:
            metrics["best_sharpe"] = result.best_value
        if result.default_value is not None:
            metrics["default_sharpe"] = result.default_value
        mlflow.log_metrics(metrics)
        mlflow.log_dict(json.loads(json.dumps(result.as_dict(), default=str)), "tuning_result.json")
        return run.info.run_id


def result_markdown(result: TuneResult) -> str:
    """Best params or the Pareto front as a markdown table (Dagster metadata, reports)."""
    lines = [f"**{result.study_name}** ({result.kind} `{result.target}`, objective `{result.objective}`): "
             f"{result.n_trials} trials, {result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed", ""]
    if result.objective == "sharpe":
        if result.best_params is None:
            return "\n".join(lines + ["no complete trial"])
        lines += ["| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in result.best_params.items()]
        lines += ["", f"best mean Sharpe: {result.best_value:.4f}"]
        if result.default_value is not None:
            lines.append(f"defaults' mean Sharpe: {result.default_value:.4f}")
        return "\n".join(lines)
    if not result.pareto:
        return "\n".join(lines + ["no complete trial"])
    names = list(result.pareto[0]["params"])
    lines += ["| trial | " + " | ".join(names) + " | Sharpe | max drawdown |",
              "|---" * (len(names) + 3) + "|"]
    for p in result.pareto:
        lines.append(f"| {p['number']} | " + " | ".join(str(p["params"].get(n)) for n in names)
                     + f" | {p['sharpe']:.4f} | {p['max_drawdown']:.4f} |")
    return "\n".join(lines)
