"""Training: AutoGluon (GBM only) and a LightGBM baseline on purged walk-forward folds, logged to MLflow,
the better of the two registered as the ``challenger``.

The most recent ``holdout_frac`` of time is never trained on: the promotion gate backtests the challenger
and the champion on it. Everything a run decides is in MLflow (params, per-fold metrics, feature list,
data hash, equity curve and feature-importance PNGs, the pyfunc model with signature and input example).
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from ml.features import FEATURE_NAMES, FeatureParams
from ml.splits import SplitError, holdout_split, purged_walk_forward
from trading.backtest.metrics import EquityStats
from trading.marketdata.timeframes import interval_ns

log = logging.getLogger(__name__)
LABEL = "tb_label"


class TrainingError(ValueError):
    """Data or models that cannot give a trustworthy challenger (the run fails, nothing is registered)."""


@dataclass(frozen=True)
class TrainConfig:
    n_splits: int = 3
    embargo_bars: int = 30
    holdout_frac: float = 0.2
    min_train_frac: float = 0.4
    min_fold_rows: int = 200
    ag_time_limit: float = 30.0
    lgbm_estimators: int = 200
    lgbm_learning_rate: float = 0.05
    lgbm_num_leaves: int = 15
    cost_bps: float = 6.0
    """Cost per unit of turnover in the cross-validation's quick evaluation: the stream's taker fee (5 bps,
    trading.venue.FeeSchedule) + 1 bp slippage. The promotion gate backtests the real thing (ml/gate.py)."""
    long_threshold: float = 0.0
    short_threshold: float = 0.0
    allow_short: bool = False
    """The live rule's parameters (MLSignal's: trading.strategies.ml_signal.direction), so that CV chooses
    the model by the rule the stream will trade: by default long above 0, flat otherwise (long-only)."""
    interval: str = "1m"
    seed: int = 0
    use_autogluon: bool = True


@dataclass
class Dataset:
    X: pd.DataFrame
    y: np.ndarray
    symbol: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    fwd_ret_1: np.ndarray
    dropped_rows: int = 0

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X.to_numpy(dtype=np.float64)).tobytes())
        h.update(self.y.astype(np.int64).tobytes())
        h.update(self.t0.astype(np.int64).tobytes())
        h.update("|".join(self.symbol.tolist()).encode())
        return h.hexdigest()[:16]

    def subset(self, idx: np.ndarray) -> "Dataset":
        return Dataset(self.X.iloc[idx].reset_index(drop=True), self.y[idx], self.symbol[idx], self.t0[idx],
                       self.t1[idx], self.fwd_ret_1[idx])


def build_dataset(features: pl.DataFrame, labels: pl.DataFrame, feature_names: list[str] = FEATURE_NAMES) -> Dataset:
    """Join features and labels on (symbol, ts); drop rows with a warming-up feature or unresolved label."""
    missing = [n for n in feature_names if n not in features.columns]
    if missing:
        raise TrainingError(f"feature frame lacks {missing}")
    j = features.join(labels, on=["symbol", "ts"], how="inner").sort("ts", "symbol")
    ok = j.with_columns([pl.col(n).fill_nan(None) for n in feature_names]).drop_nulls(
        [*feature_names, LABEL, "tb_t1", "fwd_ret_1"])
    if ok.height == 0:
        raise TrainingError(f"no usable rows: {j.height} joined rows, all with a warming-up feature or unresolved label")
    return Dataset(
        X=ok.select(feature_names).to_pandas().astype(float),
        y=ok[LABEL].cast(pl.Int64).to_numpy(), symbol=ok["symbol"].to_numpy().astype(str),
        t0=ok["ts"].to_numpy().astype(np.int64), t1=ok["tb_t1"].to_numpy().astype(np.int64),
        fwd_ret_1=ok["fwd_ret_1"].to_numpy().astype(float), dropped_rows=j.height - ok.height,
    )


def validate_dataset(ds: Dataset) -> None:
    const = [c for c in ds.X.columns if ds.X[c].nunique(dropna=False) <= 1]
    if const:
        raise TrainingError(f"constant feature(s) {const}: they carry no information; fix the feature set or the data")
    classes = np.unique(ds.y)
    if len(classes) < 2:
        raise TrainingError(f"label {LABEL!r} has one class ({classes.tolist()}): nothing to learn")


# ---- evaluation -----------------------------------------------------------------------------

def rule_params(cfg: TrainConfig) -> dict[str, Any]:
    return {"long_threshold": cfg.long_threshold, "short_threshold": cfg.short_threshold, "allow_short": cfg.allow_short}


def strategy_returns(scores: np.ndarray, fwd_ret_1: np.ndarray, symbol: np.ndarray, t0: np.ndarray,
                     params: dict[str, Any], cost_bps: float) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, portfolio return per timestamp) of trading the score by the live rule
    (``direction`` under MLSignal ``params``) over the next bar, equal weight across symbols, ``cost_bps``
    per unit turnover: the quick, vectorised evaluation of cross-validation."""
    from trading.strategies.ml_signal import direction

    pos = np.array([direction(float(s), params) for s in scores], dtype=float)
    df = pd.DataFrame({"symbol": symbol, "ts": t0, "pos": pos, "fwd": fwd_ret_1}).sort_values(["symbol", "ts"])
    turnover = df.groupby("symbol")["pos"].diff().fillna(df["pos"]).abs()
    df["ret"] = df["pos"] * df["fwd"] - turnover * cost_bps * 1e-4
    port = df.groupby("ts")["ret"].mean().sort_index()
    return port.index.to_numpy(dtype=np.int64), port.to_numpy(dtype=float)


def backtest_metrics(ts: np.ndarray, rets: np.ndarray, interval: str) -> tuple[dict[str, float], np.ndarray]:
    equity = np.cumprod(1.0 + rets)
    stats = EquityStats(1.0, interval_ns(interval))
    stats.update(ts, equity, np.ones(len(equity), dtype=bool))
    m = stats.metrics()
    return {k: float(m[k]) for k in ("sharpe", "max_drawdown", "total_return", "volatility")}, equity


def evaluate_scores(scores: np.ndarray, ds: Dataset, cfg: TrainConfig) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    ts, rets = strategy_returns(scores, ds.fwd_ret_1, ds.symbol, ds.t0, rule_params(cfg), cfg.cost_bps)
    m, equity = backtest_metrics(ts, rets, cfg.interval)
    from trading.strategies.ml_signal import direction

    pred = np.array([direction(float(s), rule_params(cfg)) for s in scores])
    m["hit_rate"] = float(np.mean(np.sign(ds.fwd_ret_1[pred != 0]) == pred[pred != 0])) if (pred != 0).any() else 0.0
    return m, ts, equity


# ---- models ---------------------------------------------------------------------------------

def fit_lightgbm(ds: Dataset, cfg: TrainConfig):
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=cfg.lgbm_estimators, learning_rate=cfg.lgbm_learning_rate,
                               num_leaves=cfg.lgbm_num_leaves, random_state=cfg.seed, n_jobs=2, verbose=-1,
                               deterministic=True, force_row_wise=True)
    return model.fit(ds.X, ds.y)


def fit_autogluon(ds: Dataset, cfg: TrainConfig, path: Path):
    from autogluon.tabular import TabularPredictor

    train = ds.X.copy()
    train[LABEL] = ds.y
    problem = "binary" if len(np.unique(ds.y)) == 2 else "multiclass"
    try:
        return TabularPredictor(label=LABEL, problem_type=problem, path=str(path), verbosity=0).fit(
            train, time_limit=cfg.ag_time_limit, hyperparameters={"GBM": {}}, num_cpus=2, num_gpus=0,
            fit_weighted_ensemble=False, calibrate_decision_threshold=False)
    except Exception as exc:  # AutoGluon raises many types; the run must say which model failed and why
        raise TrainingError(f"AutoGluon fit failed: {type(exc).__name__}: {exc}") from exc


def _scores(kind: str, model, X: pd.DataFrame) -> np.ndarray:
    from ml.pyfunc_model import predict_scores

    return predict_scores(kind, model, X)


@dataclass
class TrainResult:
    model_name: str
    version: str
    run_id: str
    kind: str
    training_data_hash: str
    holdout_start: int
    metrics: dict[str, Any] = field(default_factory=dict)


def train_and_register(ds: Dataset, cfg: TrainConfig, tracking_uri: str, model_name: str, feature_set: str,
                       label_set: str, feature_params: FeatureParams,
                       experiment: str = "tradeloop-retrain") -> TrainResult:
    """Walk-forward CV of both models, final fit before the holdout, log to MLflow, register the better
    model and give it the ``challenger`` alias. Raises TrainingError with nothing registered on bad input.
    ``feature_params`` (those ``ds`` was computed with) are logged with the model: whoever serves it builds
    the same features (model metadata ``feature_params``)."""
    import mlflow
    from mlflow import MlflowClient

    validate_dataset(ds)
    embargo_ns = cfg.embargo_bars * interval_ns(cfg.interval)
    try:
        train_idx, hold_idx, hold_start = holdout_split(ds.t0, ds.t1, cfg.holdout_frac, embargo_ns)
        dev = ds.subset(train_idx)
        folds = list(purged_walk_forward(dev.t0, dev.t1, cfg.n_splits, embargo_ns, cfg.min_train_frac, cfg.min_fold_rows))
    except SplitError as exc:
        raise TrainingError(f"too little data: {exc}") from exc
    if len(hold_idx) < cfg.min_fold_rows:
        raise TrainingError(f"too little data: the holdout window has {len(hold_idx)} rows, need {cfg.min_fold_rows}")
    hold = ds.subset(hold_idx)
    validate_dataset(dev)
    data_hash = f"fs={feature_set};ls={label_set};data={ds.digest()}"
    kinds = ["lightgbm", "autogluon"] if cfg.use_autogluon else ["lightgbm"]

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tradeloop-train-") as tmp, mlflow.start_run() as run:
        tmpd = Path(tmp)
        mlflow.log_params({**{f"cfg.{k}": v for k, v in asdict(cfg).items()}, "feature_set": feature_set,
                           "label_set": label_set, "rows": len(ds.y), "holdout_start_ns": hold_start})
        mlflow.set_tags({"training_data_hash": data_hash, "feature_set": feature_set})
        mlflow.log_dict({"features": list(ds.X.columns)}, "features.json")
        cv: dict[str, list[float]] = {k: [] for k in kinds}
        for fold in folds:
            tr, te = dev.subset(fold.train), dev.subset(fold.test)
            if len(np.unique(tr.y)) < 2:
                raise TrainingError(f"fold {fold.index}: the training labels have one class")
            for kind in kinds:
                model = fit_lightgbm(tr, cfg) if kind == "lightgbm" else fit_autogluon(tr, cfg, tmpd / f"ag_fold{fold.index}")
                m, _, _ = evaluate_scores(_scores(kind, model, te.X), te, cfg)
                mlflow.log_metrics({f"cv.{kind}.{k}": v for k, v in m.items()}, step=fold.index)
                cv[kind].append(m["sharpe"])
        mean_cv = {k: float(np.mean(v)) for k, v in cv.items()}
        # AutoGluon is the candidate; the baseline replaces it only when clearly better out of sample
        chosen = max(kinds, key=lambda k: (mean_cv[k], k == "autogluon"))
        final = {k: (fit_lightgbm(dev, cfg) if k == "lightgbm" else fit_autogluon(dev, cfg, tmpd / "ag_final")) for k in kinds}
        hold_m: dict[str, dict[str, float]] = {}
        curves = {}
        for kind in kinds:
            m, ts, eq = evaluate_scores(_scores(kind, final[kind], hold.X), hold, cfg)
            hold_m[kind] = m
            curves[kind] = (ts, eq)
            mlflow.log_metrics({f"holdout.{kind}.{k}": v for k, v in m.items()})
        mlflow.log_metrics({f"cv_mean_sharpe.{k}": v for k, v in mean_cv.items()})
        mlflow.set_tag("chosen_model", chosen)
        _log_plots(tmpd, curves, final["lightgbm"], list(ds.X.columns))

        artifact = _save_model(chosen, final[chosen], tmpd)
        from mlflow.models import infer_signature

        from ml.pyfunc_model import SignalModel

        example = dev.X.head(5)
        signature = infer_signature(example, _scores(chosen, final[chosen], example))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=SignalModel(chosen, list(ds.X.columns)), artifacts={"model": str(artifact)},
            signature=signature, input_example=example, pip_requirements=["mlflow", "pandas", "numpy"],
            metadata={"feature_params": feature_params.as_dict()},
        )
        metrics = {"cv_mean_sharpe": mean_cv, "holdout": hold_m, "chosen": chosen, "rows": int(len(ds.y)),
                   "dropped_rows": int(ds.dropped_rows), "holdout_start_ns": hold_start, "feature_set": feature_set}
        version = register(client, model_name, info.model_uri, run.info.run_id, data_hash, info.model_id)
    return TrainResult(model_name, version, run.info.run_id, chosen, data_hash, hold_start, metrics)


def register(client, model_name: str, model_uri: str, run_id: str, data_hash: str, model_id: str | None = None) -> str:
    """Register a version and give it the challenger alias; a failure part-way deletes the version.
    ``model_id``: MLflow 3's logged-model id; a tracking server (unlike a local store) rejects a
    ``models:/<id>`` source registered without it."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    mv = client.create_model_version(model_name, model_uri, run_id=run_id, tags={"training_data_hash": data_hash},
                                     model_id=model_id)
    try:
        client.set_registered_model_alias(model_name, "challenger", mv.version)
    except Exception:
        client.delete_model_version(model_name, mv.version)
        raise
    return str(mv.version)


def _save_model(kind: str, model, tmp: Path) -> Path:
    if kind == "autogluon":
        return Path(model.path)
    import joblib

    path = tmp / "lightgbm.joblib"
    joblib.dump(model, path)
    return path


def _log_plots(tmp: Path, curves: dict, lgbm, names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    fig, ax = plt.subplots(figsize=(8, 4))
    for kind, (ts, eq) in curves.items():
        ax.plot(pd.to_datetime(ts, utc=True), eq, label=kind)
    ax.set_title("holdout equity (next-bar returns, after costs)")
    ax.legend()
    fig.autofmt_xdate()
    fig.savefig(tmp / "equity_curve.png", dpi=80)
    plt.close(fig)
    imp = np.asarray(lgbm.feature_importances_, dtype=float)
    order = np.argsort(imp)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([names[i] for i in order], imp[order])
    ax.set_title("LightGBM split importance")
    fig.tight_layout()
    fig.savefig(tmp / "feature_importance.png", dpi=80)
    plt.close(fig)
    mlflow.log_artifact(str(tmp / "equity_curve.png"), "plots")
    mlflow.log_artifact(str(tmp / "feature_importance.png"), "plots")


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
