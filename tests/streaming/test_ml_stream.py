"""The ML strategy in the stream: a REAL MLflow registry (sqlite store, local artefacts in tmp), real
pyfunc models (the project's SignalModel wrapper), a real worker process, real broker and Postgres."""

from __future__ import annotations

import json
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.streaming.conftest import produce_ticks, sim_ticks, wait_until

# small feature windows so that features are warm after ~62 one-minute bars (sim origin is on the hour)
SMALL = {"cross_window": 10, "regime_window": 60, "regime_min_fit": 30, "regime_refit": "1h"}


def registry(tmp_path: Path) -> tuple[str, str]:
    """(tracking URI, experiment id) of a fresh sqlite MLflow store whose artefacts stay in tmp_path."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("stream-test", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, exp


def register_constant_model(uri: str, experiment_id: str, name: str, label: int, alias: str | None = None) -> str:
    """Register a real pyfunc model (ml.pyfunc_model.SignalModel around a fitted scikit-learn classifier)
    that always predicts class ``label`` -> score +1 (label 1), 0 (label 0) or -1 (label -1).  Known
    outputs make every assertion on targets exact; everything else (registry, artefacts, loading,
    signature, alias) is the production path.  Returns the version; sets ``alias`` when given."""
    import joblib
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.dummy import DummyClassifier

    from ml.features import FEATURE_NAMES
    from ml.pyfunc_model import SignalModel
    from ml.training import register

    rng = np.random.default_rng(label + 5)
    X = pd.DataFrame(rng.normal(size=(30, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    y = np.array([-1, 0, 1] * 10)
    clf = DummyClassifier(strategy="constant", constant=label).fit(X, y)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_tracking_uri(uri)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment_id) as run:
        path = Path(tmp) / f"clf{label}.joblib"  # log_model copies it into the run's artefacts
        joblib.dump(clf, path)
        scores = SignalModel("lightgbm", FEATURE_NAMES)
        info = mlflow.pyfunc.log_model(name="model", python_model=scores, artifacts={"model": str(path)},
                                       signature=infer_signature(X.head(3), np.zeros(3)),
                                       pip_requirements=["mlflow", "pandas", "numpy", "scikit-learn"])
        version = register(client, name, info.model_uri, run.info.run_id, f"constant={label}", info.model_id)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version


def _bars_trader(strategy, account="ml-inproc"):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits

    sim = SimVenue(SimConfig(seed=7))
    return Trader(account, {"ml": strategy}, cash=Decimal(100000), limits=RiskLimits(),
                  instruments={i.symbol: i for i in sim.instruments()})


def test_registry_signal_in_process_champion_swap_and_outage(tmp_path):
    """In process (no worker): flat with a reason -> v1 long -> v2 flat, the version on every signal;
    registry down keeps the last model serving with a warning."""
    from ml.serving import ChampionModel
    from streaming.ml_strategy import RegistrySignal

    uri, exp = registry(tmp_path)
    clock = [0.0]
    champ = ChampionModel("inproc-m", uri, poll_interval_s=10, clock=lambda: clock[0])
    strat = RegistrySignal(champ, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], **SMALL)
    trader = _bars_trader(strat)
    ticks = sim_ticks(140)
    by_min = lambda m: [t for t in ticks if t.exchange_ts < ticks[0].exchange_ts - ticks[0].exchange_ts % 60_000_000_000 + m * 60_000_000_000]  # noqa: E731
    first = by_min(70)
    for t in first:
        trader.on_tick(t)
    b = trader.drain()
    assert not b.signals and not b.orders  # no champion: flat, nothing recorded as a model signal
    assert "carries the 'champion' alias" in strat.flat_reason
    assert strat.view()["serving_version"] is None

    v1 = register_constant_model(uri, exp, "inproc-m", 1, alias="champion")
    clock[0] += 11
    second = by_min(100)[len(first):]
    for t in second:
        trader.on_tick(t)
    b = trader.drain()
    assert b.signals and {s.model_version for s in b.signals} == {v1} == {"1"}
    assert {s.target for s in b.signals} == {1.0} and {s.score for s in b.signals} == {1.0}
    assert not any(s.shadow for s in b.signals)
    assert b.orders and all(o.side.value == "buy" for o in b.orders)
    assert strat.flat_reason is None

    register_constant_model(uri, exp, "inproc-m", -1, alias="champion")  # v2: score -1, no shorts -> flat
    clock[0] += 11
    third = by_min(120)[len(first) + len(second):]
    for t in third:
        trader.on_tick(t)
    b = trader.drain()
    assert {s.model_version for s in b.signals} == {"2"} and {s.target for s in b.signals} == {0.0}
    assert b.orders and all(o.side.value == "sell" for o in b.orders)  # closes the v1 longs

    champ.tracking_uri = "http://127.0.0.1:9"  # nothing listens: the registry is down
    clock[0] += 11
    for t in by_min(125)[len(first) + len(second) + len(third):]:
        trader.on_tick(t)
    b = trader.drain()
    assert {s.model_version for s in b.signals} == {"2"}  # the last loaded model keeps serving
    assert strat.view()["champion"]["warning"].startswith("registry/model unavailable")


def test_bad_ml_params_fail_clearly():
    from streaming.ml_strategy import create_stream_strategy
    from trading.strategies.base import StrategyError

    kw = dict(model_name="m", tracking_uri="sqlite:///nowhere.db", poll_interval_s=1, symbols=["BTC/USDT"])
    with pytest.raises(StrategyError, match="unknown parameter 'lookbak'"):
        create_stream_strategy("ml_signal", {"lookbak": 3}, **kw)
    with pytest.raises(StrategyError, match="regime_refit='7m' is not one of"):
        create_stream_strategy("ml_signal", {"regime_refit": "7m"}, **kw)
    with pytest.raises(StrategyError, match="needs a registered model name"):
        create_stream_strategy("ml_signal", {}, **{**kw, "model_name": ""})


def _signals(engine, account: str) -> list[tuple]:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT strategy, symbol, score, target, model_name, model_version, shadow"
                                 " FROM signals WHERE account=:a ORDER BY ts, symbol, shadow"), {"a": account}).fetchall()


def test_worker_serves_champion_swaps_without_restart(worker_factory, stream_env, engine, kafka_bootstrap, tmp_path):
    uri, exp = registry(tmp_path)
    name = "stream-m-" + stream_env["TRADELOOP_ACCOUNT"]
    stream_env.update({"MLFLOW_TRACKING_URI": uri, "TRADELOOP_MODEL_NAME": name,
                       "TRADELOOP_MODEL_POLL_INTERVAL_S": "0.5",
                       "TRADELOOP_STREAM_STRATEGIES": json.dumps({"ml": ["ml_signal", SMALL]})})
    w = worker_factory()
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    ticks = sim_ticks(125, ex)
    minute = lambda m: next(i for i, t in enumerate(ticks) if t.exchange_ts >= ticks[0].exchange_ts + m * 60_000_000_000)  # noqa: E731
    a, b_, c_ = minute(70), minute(95), minute(120)

    # (a) no champion: flat, and the reason is visible in /model, /metrics and the log
    produce_ticks(kafka_bootstrap, prefix, ticks[:a])
    w.wait_ticks(a)
    view = w.get("/model")["slots"]["ml"]
    assert view["serving_version"] is None and "carries the 'champion' alias" in view["flat_reason"], view
    assert view["counters"].get("flat_no_model", 0) > 0  # features were warm: it was flat for want of a model
    metrics = w.text("/metrics")
    assert 'tradeloop_model_flat{slot="ml"} 1.0' in metrics
    assert 'tradeloop_model_version{alias="champion",slot="ml"} 0.0' in metrics
    assert "is flat: no model of" in w.log.read_text()
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM orders WHERE account=:a"), {"a": account}).scalar() == 0
    assert _signals(engine, account) == []

    # (b) register v1 (always long) and make it champion: picked up without restart
    pid = w.proc.pid
    v1 = register_constant_model(uri, exp, name, 1, alias="champion")
    wait_until(lambda: w.get("/model")["slots"]["ml"]["serving_version"] == v1, 30, "v1 to be served", w.log)
    produce_ticks(kafka_bootstrap, prefix, ticks[a:b_])
    w.wait_ticks(b_)
    wait_until(lambda: _signals(engine, account), 10, "v1 signals in Postgres", w.log)
    sig = _signals(engine, account)
    assert {(s[4], s[5], s[3], s[6]) for s in sig} == {(name, "1", 1.0, False)}
    assert {s[1] for s in sig} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    with engine.connect() as c:
        buys = c.execute(sa.text("SELECT count(*) FROM trades WHERE account=:a AND strategy='ml' AND side='buy'"),
                         {"a": account}).scalar()
    assert buys >= 3

    # (c) promote v2 (always -1 -> flat, no shorts): signals switch to version 2, longs are closed
    v2 = register_constant_model(uri, exp, name, -1, alias="champion")
    wait_until(lambda: w.get("/model")["slots"]["ml"]["serving_version"] == v2, 30, "v2 to be served", w.log)
    produce_ticks(kafka_bootstrap, prefix, ticks[b_:c_])
    w.wait_ticks(c_)
    wait_until(lambda: any(s[5] == "2" for s in _signals(engine, account)), 10, "v2 signals", w.log)
    time.sleep(1.5)  # the idle flush
    sig = _signals(engine, account)
    assert {(s[5], s[3]) for s in sig} == {("1", 1.0), ("2", 0.0)}
    assert w.proc.pid == pid and w.proc.poll() is None  # same process throughout: no restart
    with engine.connect() as c:
        pos = dict(c.execute(sa.text("SELECT symbol, quantity FROM positions WHERE account=:a AND strategy='ml'"),
                             {"a": account}).fetchall())
    assert pos and all(q == 0 for q in pos.values()), pos
    # the signals topic carries the same model versions
    from tests.streaming.conftest import consume_all

    on_topic = [json.loads(v) for v in consume_all(kafka_bootstrap, prefix + "signals", timeout_s=3)]
    assert {m["model_version"] for m in on_topic} == {"1", "2"} and all(m["model_name"] == name for m in on_topic)
    assert len(on_topic) == len(sig)
