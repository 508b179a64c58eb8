"""Optuna studies in the real test PostgreSQL: strategy tuning through the backtester (pruning, Pareto
front, resume by name), LightGBM tuning on purged folds, MLflow logging, and clear errors."""

from __future__ import annotations

import uuid

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from ml.tuning import TuningError, make_storage, result_markdown, strategy_windows, tune_model, tune_strategy
from trading.backtest.runner import BacktestConfig
from trading.backtest.data import load_sim_bars
from trading.backtest.walkforward import walk_forward
from trading.strategies import create_strategy

from .conftest import SMALL_FEATURES, sim_bars

SPACE = {"fast": [2, 60], "slow": [20, 400]}


@pytest.fixture(scope="module")
def bars():
    return load_sim_bars("BTC/USDT", 4000, seed=7)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # the session's Postgres is shared: one study per test run


def _study(pg_url: str, name: str):
    return optuna.load_study(study_name=name, storage=make_storage(pg_url))


def _independent_mean_sharpe(bars, params: dict, n_windows: int = 4) -> float:
    """The same objective computed without ml.tuning: trading.backtest.walk_forward on the same blocks."""
    w = strategy_windows(bars.height, n_windows)
    block = w[0].test_end - w[0].test_start
    res = walk_forward(bars.head(w[-1].test_end), lambda _train: create_strategy("sma_cross", params), block, block,
                       config=BacktestConfig(fee_bps=5.0))
    return float(np.mean([r.result.metrics["sharpe"] for r in res]))


def test_small_study_beats_the_defaults(pg_url, bars, tracking_uri):
    # include_defaults=False: the defaults are not handed to the study, it has to find something as good.
    r = tune_strategy("sma_cross", bars, 8, pg_url, _name("sma"), space=SPACE, seed=0, include_defaults=False,
                      tracking_uri=tracking_uri)
    default = _independent_mean_sharpe(bars, {})
    print(f"defaults {default:.3f}  best {r.best_value:.3f} {r.best_params}  complete {r.n_complete} "
          f"pruned {r.n_pruned} failed {r.n_failed}")
    assert r.default_value == pytest.approx(default, rel=1e-9)
    assert r.n_trials == 8 and r.n_complete >= 1
    assert r.best_value >= default
    # the reported best is what the backtester really gives for those params
    assert _independent_mean_sharpe(bars, r.best_params) == pytest.approx(r.best_value, rel=1e-9)
    assert 2 <= r.best_params["fast"] <= 60 and 20 <= r.best_params["slow"] <= 400

    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=tracking_uri).get_run(r.mlflow_run_id)
    assert run.data.params["best.fast"] == str(r.best_params["fast"])
    assert run.data.metrics["best_sharpe"] == pytest.approx(r.best_value)
    assert "password" not in run.data.tags["optuna_storage"] and run.data.tags["study_name"] == r.study_name
    assert "| fast |" in result_markdown(r)


def test_pruning_stops_trials_in_a_bad_region(pg_url, bars):
    # fast/slow down to 2/3 with 5 bps fees: churning crossovers whose first window is already far below
    # the median; MedianPruner must stop them before they run all four windows.
    name = _name("prune")
    r = tune_strategy("sma_cross", bars, 16, pg_url, name, space={"fast": [2, 60], "slow": [3, 400]}, seed=1,
                      pruner_startup_trials=3)
    trials = _study(pg_url, name).get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    print(f"complete {r.n_complete} pruned {r.n_pruned} failed {r.n_failed}; pruned at windows "
          f"{[t.user_attrs['windows_evaluated'] for t in pruned]}")
    assert r.n_pruned == len(pruned) >= 1
    assert any(t.user_attrs["windows_evaluated"] < 4 for t in pruned)  # stopped early, not merely unscored
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in pruned:
        step = max(t.intermediate_values)
        # a pruned trial was below the median of the complete trials at the step where it stopped
        assert t.intermediate_values[step] < np.median([c.intermediate_values[step] for c in complete])
    # fast >= slow draws are FAIL trials with the strategy's message, not crashes of the study
    assert r.n_complete + r.n_pruned + r.n_failed == 16
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all("must be smaller than slow" in t.user_attrs["invalid_params"] for t in failed)


def test_multi_objective_returns_a_non_dominated_front(pg_url, bars):
    name = _name("pareto")
    r = tune_strategy("sma_cross", bars, 12, pg_url, name, objective="sharpe_vs_drawdown", space=SPACE, seed=3)
    front = r.pareto
    assert front and r.best_params is None

    def dominates(a, b):  # maximise Sharpe, minimise drawdown
        return (a[0] >= b[0] and a[1] <= b[1]) and (a[0] > b[0] or a[1] < b[1])

    pts = [(p["sharpe"], p["max_drawdown"]) for p in front]
    for i, a in enumerate(pts):
        for j, b in enumerate(pts):
            assert i == j or not dominates(a, b), (a, b)
    # and the front is complete: every other finished trial is dominated by a front member
    numbers = {p["number"] for p in front}
    others = [t for t in _study(pg_url, name).get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE and t.number not in numbers]
    for t in others:
        assert any(dominates(a, tuple(t.values)) for a in pts), t.values
    assert all(d >= 0 for _, d in pts)
    print(f"front of {len(front)} from {r.n_complete} trials: {pts}")
    assert "| Sharpe | max drawdown |" in result_markdown(r)


def test_resume_by_name_continues_and_lives_in_its_own_schema(pg_url, engine, bars):
    with engine.connect() as conn:
        platform_rev = conn.execute(sa.text("SELECT version_num FROM public.alembic_version ORDER BY 1")).scalars().all()
    name = _name("resume")
    first = tune_strategy("sma_cross", bars, 3, pg_url, name, space=SPACE, seed=0)
    again = tune_strategy("sma_cross", bars, 2, pg_url, name, space=SPACE, seed=0)
    assert (first.n_trials, again.n_trials) == (3, 5)
    assert again.best_value >= first.best_value
    with pytest.raises(TuningError, match="objective='sharpe'.*use another study name"):
        tune_strategy("sma_cross", bars, 1, pg_url, name, objective="sharpe_vs_drawdown")
    with engine.connect() as conn:
        # optuna's tables (and its own alembic_version) are in schema optuna; the platform's revision is untouched
        assert conn.execute(sa.text("SELECT to_regclass('optuna.studies') IS NOT NULL AND "
                                    "to_regclass('public.studies') IS NULL")).scalar()
        assert conn.execute(sa.text("SELECT version_num FROM public.alembic_version ORDER BY 1")).scalars().all() == platform_rev


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="no_such_strategy"), "unknown strategy 'no_such_strategy'"),
    (dict(n_trials=0), "n_trials must be an integer >= 1, got 0"),
    (dict(objective="sortino"), "objective must be one of"),
    (dict(space={"fast": [0, 10]}), "search space of 'fast' leaves the declared range"),
    (dict(space={"speed": [1, 2]}), "unknown parameter 'speed'"),
    (dict(study_name=" "), "study_name must be a non-empty name"),
    (dict(storage_url="sqlite:///x.db"), "study storage must be PostgreSQL"),
    (dict(n_windows=100), "4000 bars give 39-bar windows"),
])
def test_bad_input_is_a_clear_error(pg_url, bars, kwargs, message):
    args = dict(name="sma_cross", bars=bars, n_trials=2, storage_url=pg_url, study_name=_name("bad"))
    with pytest.raises(TuningError, match=message):
        tune_strategy(**{**args, **kwargs})


def test_tune_model_on_purged_folds(pg_url, tracking_uri):
    from ml.features import FeatureParams, compute_features
    from ml.labels import LabelParams, compute_labels
    from ml.training import TrainConfig, build_dataset

    b = sim_bars(2000, seed=5)
    ds = build_dataset(compute_features(b, FeatureParams(**SMALL_FEATURES)), compute_labels(b, LabelParams(10, 1.5)))
    cfg = TrainConfig(n_splits=2, min_fold_rows=100, use_autogluon=False)
    name = _name("lgbm")
    r = tune_model(ds, 4, pg_url, name, cfg=cfg, seed=0, tracking_uri=tracking_uri)
    print(f"lightgbm: best {r.best_value} {r.best_params}; complete {r.n_complete} pruned {r.n_pruned}")
    assert r.n_trials == 4 and r.n_complete + r.n_pruned == 4
    assert set(r.best_params) == {"lgbm_estimators", "lgbm_learning_rate", "lgbm_num_leaves"}
    TrainConfig(**{**cfg.__dict__, **r.best_params})  # usable as TrainConfig overrides
    first = _study(pg_url, name).trials[0]
    assert first.params == {"lgbm_estimators": 200, "lgbm_learning_rate": 0.05, "lgbm_num_leaves": 15}
    assert len(first.intermediate_values) == 2  # one report per purged fold
    with pytest.raises(TuningError, match="cannot tune on this dataset"):
        tune_model(ds.subset(np.arange(300)), 1, pg_url, _name("lgbm"), cfg=cfg)


def test_strategy_tuning_asset_on_clean_bars(engine, pg_url, tracking_uri):
    import dagster as dg

    from assets import ml as ml_assets, tuning as tuning_assets
    from assets.ml import MLResource
    from assets.resources import PostgresResource
    from assets.tuning import strategy_tuning
    from orchestration.automation import tune_job

    from .conftest import write_clean_bars

    write_clean_bars(engine, sim_bars(1440, seed=31, exchange="tunetest").filter(
        sim_bars(1440, seed=31, exchange="tunetest")["symbol"] == "ETH/USDT"))
    defs = dg.Definitions(assets=dg.load_assets_from_modules([ml_assets, tuning_assets]), jobs=[tune_job],
                          resources={"ml": MLResource(tracking_uri=tracking_uri), "db": PostgresResource(url=pg_url)})
    assert defs.resolve_job_def("tune") is not None
    res = {"db": PostgresResource(url=pg_url), "ml": MLResource(tracking_uri=tracking_uri, exchange="tunetest")}
    cfg = {"strategy": "sma_cross", "n_trials": 5, "symbol": "ETH/USDT", "days": 1, "space_json": '{"fast": [2, 30], "slow": [40, 200]}',
           "objective": "sharpe_vs_drawdown", "study_name": _name("asset"),
           "account": _name("acct")}  # the release gate's decision goes to an account of this test only
    r = dg.materialize([strategy_tuning], resources=res, run_config={"ops": {"strategy_tuning": {"config": cfg}}})
    meta = r.asset_materializations_for_node("strategy_tuning")[0].metadata
    assert meta["bars"].value == 1440 and meta["n_trials"].value == 5
    assert "| Sharpe | max drawdown |" in meta["result"].value and meta["pareto_front"].value
    assert meta["mlflow_run_id"].value
    with pytest.raises(dg.Failure, match="market_data_clean has no 1m bars of ETH/USDT on nowhere"):
        dg.materialize([strategy_tuning], resources={**res, "ml": MLResource(tracking_uri=tracking_uri, exchange="nowhere")},
                       run_config={"ops": {"strategy_tuning": {"config": cfg}}})
    with pytest.raises(dg.Failure, match="tuning failed: n_trials must be an integer >= 1"):
        dg.materialize([strategy_tuning], resources=res,
                       run_config={"ops": {"strategy_tuning": {"config": {**cfg, "n_trials": 0}}}})
