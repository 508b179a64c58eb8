"""The online model kind (ml/online.py): batch labels, no look-ahead, checkpoint/resume in a real MLflow
registry, and promotion through the same gate as the batch models (assets/ml.py ml_promotion)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from ml.features import FeatureParams, OnlineFeatures
from ml.labels import LabelParams, compute_labels
from ml.online import ONLINE_ALIAS, OnlineLabels, OnlineModel, load_checkpoint

from .conftest import SMALL_FEATURES, as_records, sim_bars

SYMS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
LP = LabelParams(horizon=10, barrier_k=1.5)
FP = FeatureParams("1m", **SMALL_FEATURES)


def test_online_labels_equal_batch_labels_and_wait_for_the_horizon():
    bars = sim_bars(400, seed=3)
    batch = compute_labels(bars, LP).drop_nulls("tb_label")
    want = {(s, t): int(y) for s, t, y in batch.select("symbol", "ts", "tb_label").iter_rows()}
    labels = OnlineLabels(LP)
    got, seen = {}, {}
    for b in as_records(bars):
        idx = seen[b.symbol] = seen.get(b.symbol, -1) + 1
        out = labels.update(b.symbol, b.exchange_ts, float(b.close), {"i": idx})
        if out is not None:
            t0, feats, y = out
            # bar i is released by the close of bar i + horizon, not one bar earlier
            assert idx - feats["i"] == LP.horizon, (b.symbol, idx, feats)
            got[(b.symbol, t0)] = y
    assert got == want and len(want) > 3 * 300
    assert set(got.values()) == {-1, 0, 1}


def _run(records, model: OnlineModel) -> dict[tuple[str, int], float]:
    feats = OnlineFeatures(SYMS, FP)
    scores = {}
    for b in records:
        row = feats.update(b)
        model.observe(b.symbol, b.exchange_ts, float(b.close), row)
        if row is not None:
            s = model.score(row)
            if s is not None:
                scores[(b.symbol, b.exchange_ts)] = s[0]
    return scores


def test_no_look_ahead_scores_up_to_t_ignore_every_later_bar():
    """Change every bar after T (prices scaled by a random walk): the scores up to T do not move, and the
    model has learned at T only bars whose horizon had closed by T."""
    bars = sim_bars(500, seed=5)
    cut = int(bars["ts"].min()) + 350 * 60_000_000_000
    rng = np.random.default_rng(0)
    shock = pl.Series(np.exp(np.cumsum(rng.normal(0, 0.01, bars.height))))
    later = bars.with_columns([pl.when(pl.col("ts") > cut).then(pl.col(c) * shock).otherwise(pl.col(c)).alias(c)
                               for c in ("open", "high", "low", "close")])
    a, b = OnlineModel("m", FP, LP, min_learned=20), OnlineModel("m", FP, LP, min_learned=20)
    sa_, sb = _run(as_records(bars), a), _run(as_records(later), b)
    early = {k for k in sa_ if k[1] <= cut}
    assert len(early) > 3 * 100
    assert all(sa_[k] == sb[k] for k in early)
    assert any(sa_[k] != sb[k] for k in sa_ if k[1] > cut + LP.horizon * 60_000_000_000)

    # learned-until at T: exactly the bars at least `horizon` bars before T
    c = OnlineModel("m", FP, LP, min_learned=20)
    _run([r for r in as_records(bars) if r.exchange_ts <= cut], c)
    assert max(c.state.learned_until.values()) == cut - LP.horizon * 60_000_000_000
    assert all(-1.0 <= s <= 1.0 for s in sa_.values())


def test_learn_and_score_cost_per_bar():
    """Not a benchmark (see benchmarks/bench_online.py): a guard that learning stays far below a bar."""
    import time

    model = OnlineModel("m", FP, LP, min_learned=1)
    recs = as_records(sim_bars(600, seed=8))
    feats = OnlineFeatures(SYMS, FP)
    rows = [(b, feats.update(b)) for b in recs]
    t0 = time.perf_counter()
    for b, row in rows:
        model.observe(b.symbol, b.exchange_ts, float(b.close), row)
        if row is not None:
            model.score(row)
    per_bar = (time.perf_counter() - t0) / len(rows)
    assert model.state.n_learned > 1000
    assert per_bar < 0.005, per_bar  # 5 ms: a bar is 60 s


def test_checkpoint_resume_and_pyfunc_scores(tracking_uri):
    recs = as_records(sim_bars(500, seed=9))
    first, rest = [r for r in recs if r.exchange_ts < recs[0].exchange_ts + 400 * 60_000_000_000], None
    rest = recs[len(first):]
    m = OnlineModel("online-m", FP, LP, tracking_uri=tracking_uri, min_learned=10)
    assert not m.resume()  # nothing registered yet
    _run(first, m)
    v1 = m.save(m.snapshot())
    assert v1 == "1" and m.version == "online@v1" and m.warning is None
    from ml.registry import alias_version
    from ml.serving import ChampionModel, load_version

    assert alias_version(tracking_uri, "online-m", ONLINE_ALIAS) == "1"
    assert alias_version(tracking_uri, "online-m", "challenger") is None  # a checkpoint is not a challenger

    # the registered version scores like the in-memory learner (the pyfunc path the gate and the stream use)
    feats = OnlineFeatures(SYMS, FP)
    rows = [r for r in (feats.update(b) for b in recs) if r is not None][-20:]
    import pandas as pd

    pyf = load_version("online-m", "1", tracking_uri)
    assert np.allclose(pyf.predict(pd.DataFrame(rows)), [m.score(r)[0] for r in rows], rtol=0, atol=1e-12)
    champ = ChampionModel("online-m", tracking_uri, alias=ONLINE_ALIAS)
    assert champ.refresh() and champ.feature_params == FP

    # a restarted learner resumes, and a replay of bars it learned learns none of them twice
    r = OnlineModel("online-m", FP, LP, tracking_uri=tracking_uri, min_learned=10)
    assert r.resume() and r.state.n_learned == m.state.n_learned and r.version == "online@v1"
    _run(first, r)
    assert r.state.n_learned == m.state.n_learned
    model, state = load_checkpoint(tracking_uri, "online-m", "1")
    assert state.learned_until == m.state.learned_until
    # ... and goes on learning the bars after it exactly as the learner that never stopped
    _run(rest, m)
    _run(rest, r)  # r's features restart cold; its labels still resume exactly
    assert r.state.learned_until.keys() == m.state.learned_until.keys()

    # other label parameters: not resumed, said why
    other = OnlineModel("online-m", FP, LabelParams(horizon=5), tracking_uri=tracking_uri)
    assert not other.resume() and "other feature/label parameters" in other.warning


def test_registry_down_keeps_learning():
    m = OnlineModel("m", FP, LP, tracking_uri="http://127.0.0.1:9", min_learned=1)
    _run(as_records(sim_bars(200, seed=2)), m)
    n = m.state.n_learned
    assert m.save(m.snapshot()) is None and m.warning.startswith("online checkpoint failed")
    assert n > 0 and m.version == "online"


def test_online_checkpoint_is_promotable_through_the_gate(engine, pg_url, tracking_uri):
    """Checkpoint v1 after day 1, v2 mid day 2: v2's save proposes v1 as challenger on the bars v1 never
    learned (purged by horizon + 1); the batch models' promotion asset gates it, and it becomes champion."""
    import dagster as dg

    from assets.ml import ml_features, ml_labels, ml_promotion, promotion_gate
    from ml.registry import alias_version

    from .conftest import write_clean_bars
    from .test_retrain_dagster import _resources

    ex = "mlonline"
    bars = sim_bars(2 * 1440, seed=21, exchange=ex)
    write_clean_bars(engine, bars)
    res = _resources(pg_url, tracking_uri, model_name="online-gate", exchange=ex, horizon=LP.horizon,
                     barrier_k=LP.barrier_k)
    # the gate's window lies in day 2: only its features and labels are needed (warmed from day 1's bars)
    assert dg.materialize([ml_features, ml_labels], partition_key="2026-11-02", resources=res).success
    recs = as_records(bars)
    day1 = [b for b in recs if b.exchange_ts < recs[0].exchange_ts + 1440 * 60_000_000_000]
    day2 = [b for b in recs[len(day1):] if b.exchange_ts < recs[0].exchange_ts + 2000 * 60_000_000_000]
    fp = res["ml"].feature_params()
    m = OnlineModel("online-gate", fp, LP, tracking_uri=tracking_uri, database_url=pg_url, min_learned=10)
    feats = OnlineFeatures(SYMS, fp)
    for chunk in (day1, day2):
        for b in chunk:
            m.observe(b.symbol, b.exchange_ts, float(b.close), feats.update(b))
        assert m.save(m.snapshot()) is not None, m.warning
    assert alias_version(tracking_uri, "online-gate", "challenger") == "1"
    assert alias_version(tracking_uri, "online-gate", ONLINE_ALIAS) == "2"
    with engine.connect() as conn:
        metrics = conn.execute(sa.text("SELECT metrics FROM ml_models WHERE model_name='online-gate' AND version=1")).scalar()
    step = 60_000_000_000
    assert metrics["holdout_start_ns"] == day1[-1].exchange_ts - LP.horizon * step + (LP.horizon + 1) * step
    assert metrics["window_end_ns"] == day2[-1].exchange_ts + step

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([ml_promotion, promotion_gate], resources=res, instance=instance)
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("ml_promotion")[0].metadata.items()}
    assert meta["challenger_version"] == "1" and meta["decision"]["window"] == [metrics["holdout_start_ns"],
                                                                                metrics["window_end_ns"]]
    sharpe = meta["decision"]["challenger"]["sharpe"]
    assert math.isfinite(sharpe)
    # the test's resources have permissive thresholds and no champion: the gate passes and moves the alias
    assert meta["promoted"] and alias_version(tracking_uri, "online-gate", "champion") == "1"
    assert result.get_asset_check_evaluations()[0].passed


@pytest.mark.parametrize("bad", [{"horizon": 0}, {"barrier_k": 0.0}])
def test_bad_label_params_refused(bad):
    from ml.online import OnlineError

    with pytest.raises(OnlineError, match="horizon must be >= 1"):
        OnlineLabels(LabelParams(**{**{"horizon": 10, "barrier_k": 1.0}, **bad}))
