import numpy as np
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from ml.features import FeatureParams, compute_features
from ml.labels import LabelParams, compute_labels
from ml.registry import GateConfig, PromotionError, alias_version, apply_gate, gate_decision, rollback
from storage.ml import record_model
from ml.serving import ChampionModel
from ml.training import TrainConfig, TrainingError, build_dataset, train_and_register, validate_dataset

from .conftest import SMALL_FEATURES, sim_bars

CFG = TrainConfig(n_splits=2, min_fold_rows=100, use_autogluon=False, lgbm_estimators=30)


@pytest.fixture(scope="module")
def dataset():
    bars = sim_bars(1200, seed=5)
    return build_dataset(compute_features(bars, FeatureParams(**SMALL_FEATURES)),
                         compute_labels(bars, LabelParams(horizon=10, barrier_k=1.5)))


def _train(ds, uri, name):
    return train_and_register(ds, CFG, uri, name, "fs-test", "ls-test", FeatureParams(**SMALL_FEATURES))


def test_champion_model_refresh_swap_and_outages(dataset, tracking_uri, tmp_path):
    clock = [0.0]
    cm = ChampionModel("serve-m", tracking_uri, poll_interval_s=30, clock=lambda: clock[0])
    assert cm.refresh() is False and cm.current() is None and cm.predict({"x": 1.0}) is None
    assert "carries the 'champion' alias" in cm.status["reason"]
    r1 = _train(dataset, tracking_uri, "serve-m")
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    client.set_registered_model_alias("serve-m", "champion", r1.version)
    assert cm.refresh() is True and cm.current()[1] == r1.version
    assert cm.feature_names == list(dataset.X.columns)
    score = cm.predict(dataset.X.iloc[0].to_dict())
    assert -1.0 <= score <= 1.0
    assert cm.maybe_refresh() is False  # within the poll interval: no registry call
    r2 = _train(dataset, tracking_uri, "serve-m")
    client.set_registered_model_alias("serve-m", "champion", r2.version)
    clock[0] = 31.0
    assert cm.maybe_refresh() is True and cm.current()[1] == r2.version and cm.status["version"] == r2.version
    assert cm.refresh() is False  # same version: no reload
    # registry down (the tracking server stops answering: nothing listens on port 9); the last model
    # keeps serving, with a warning
    cm.tracking_uri = "http://127.0.0.1:9"
    assert cm.refresh() is False
    assert cm.current()[1] == r2.version and cm.status["warning"]
    assert cm.predict(dataset.X.iloc[0].to_dict()) is not None
    # never reachable: no model, a warning
    down = ChampionModel("serve-m", "http://127.0.0.1:9", poll_interval_s=1)
    assert down.refresh() is False and down.current() is None and down.status["warning"]


def test_train_register_and_serve_through_the_tracking_server(dataset, mlflow_server):
    """The platform's MLflow is a server: registering (MLflow 3 logged-model sources) and loading the
    champion must work over its REST API, not only against a local store."""
    r = _train(dataset, mlflow_server, "server-m")
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert alias_version(mlflow_server, "server-m", "challenger") == r.version
    assert client.get_model_version("server-m", r.version).tags["training_data_hash"] == r.training_data_hash
    client.set_registered_model_alias("server-m", "champion", r.version)
    cm = ChampionModel("server-m", mlflow_server, poll_interval_s=30)
    assert cm.refresh() is True and cm.current()[1] == r.version
    row = {c: float(v) for c, v in dataset.X.iloc[0].items()}
    assert np.isfinite(cm.predict(row))


def test_gate_decision_numbers():
    cfg = GateConfig(sharpe_margin=0.5, max_drawdown_limit=0.1, min_sharpe=1.0)
    assert gate_decision({"sharpe": 2.0, "max_drawdown": -0.05}, None, cfg)["passed"]
    assert not gate_decision({"sharpe": 0.9, "max_drawdown": -0.05}, None, cfg)["passed"]
    assert not gate_decision({"sharpe": 3.0, "max_drawdown": -0.2}, None, cfg)["passed"]
    assert gate_decision({"sharpe": 2.0, "max_drawdown": -0.05}, {"sharpe": 1.4, "max_drawdown": -0.01}, cfg)["passed"]
    d = gate_decision({"sharpe": 2.0, "max_drawdown": -0.05}, {"sharpe": 1.6, "max_drawdown": -0.01}, cfg)
    assert not d["passed"] and "margin" in d["reason"]


def test_alias_moves_only_on_pass_and_rollback(engine, dataset, tracking_uri):
    name = "gate-m"
    versions = []
    for _ in range(3):
        r = _train(dataset, tracking_uri, name)
        with engine.begin() as conn:
            record_model(conn, name, r.version, r.run_id, r.training_data_hash, "challenger", r.metrics)
        versions.append(r.version)
    v1, v2, v3 = versions
    ok = {"passed": True, "reason": "test pass"}
    assert apply_gate(engine, tracking_uri, name, v1, ok)
    assert alias_version(tracking_uri, name, "champion") == v1
    assert not apply_gate(engine, tracking_uri, name, v2, {"passed": False, "reason": "test fail"})
    assert alias_version(tracking_uri, name, "champion") == v1  # failing gate moved nothing
    assert apply_gate(engine, tracking_uri, name, v3, ok)
    assert apply_gate(engine, tracking_uri, name, v3, ok)  # replay: idempotent
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text("SELECT version::text, status FROM ml_models WHERE model_name = :m"), {"m": name}).all())
        audits = conn.execute(sa.text("SELECT action FROM audit_log WHERE scope = :s ORDER BY action"),
                              {"s": f"model:{name}"}).scalars().all()
    assert status == {v1: "retired", v2: "rejected", v3: "champion"}
    assert sorted(audits) == ["gate_reject", "promote", "promote"]
    assert rollback(engine, tracking_uri, name, "test") == (v3, v1)
    assert alias_version(tracking_uri, name, "champion") == v1
    with pytest.raises(PromotionError, match="no previous champion"):
        rollback(engine, tracking_uri, name, "again")


def test_bad_training_input_fails_clearly(dataset, tracking_uri):
    const = build_dataset.__wrapped__ if hasattr(build_dataset, "__wrapped__") else None  # noqa: F841
    ds = dataset.subset(np.arange(len(dataset.y)))
    ds.X["rsi_14"] = 1.0
    with pytest.raises(TrainingError, match=r"constant feature\(s\) \['rsi_14'\]"):
        validate_dataset(ds)
    one = dataset.subset(np.arange(len(dataset.y)))
    one.y = np.ones_like(one.y)
    with pytest.raises(TrainingError, match="one class"):
        train_and_register(one, CFG, tracking_uri, "bad-m", "fs", "ls", FeatureParams())
    tiny = dataset.subset(np.arange(300))
    with pytest.raises(TrainingError, match="too little data"):
        train_and_register(tiny, CFG, tracking_uri, "bad-m", "fs", "ls", FeatureParams())
    assert alias_version(tracking_uri, "bad-m", "challenger") is None  # nothing registered
