"""The gate can tell (issue 13, 4b): on the default sim market a model trained on its features finds the
edge and is promoted; on the null market (TRADELOOP_SIM_STRUCTURE=0) every candidate is refused -- no
promotion by luck over many seeds at the gate's threshold.

Domain functions on small data (no Dagster, no MLflow), the same ones the retrain job calls: sim bars ->
features -> labels -> dataset -> holdout split -> LightGBM -> scores of the unseen holdout -> the live
rule's backtest (ml/gate.py: long-only, the stream's sizing, fees, slippage) -> gate_decision with the
default GateConfig.  The Dagster path is tests/ml/test_retrain_dagster.py.
"""

from __future__ import annotations

import os

import pytest

from ml.features import FeatureParams, compute_features
from ml.gate import LiveRule, trade_scores
from ml.labels import compute_labels
from ml.registry import GateConfig, gate_decision
from ml.splits import holdout_split
from ml.training import TrainConfig, _scores, build_dataset, fit_lightgbm
from trading.marketdata.sim import SimVenue, anchored_config

DAYS = 3
# the defaults of training, smaller: 3 days, and the regime fit on the windows the ML tests use
PARAMS = FeatureParams(cross_window=20, regime_window=200, regime_min_fit=60, regime_refit="2h")
TRAIN = TrainConfig(lgbm_estimators=100)
# more seeds: TRADELOOP_GATE_NULL_SEEDS=100 (a soak; the default keeps the suite fast)
NULL_SEEDS = range(100, 100 + max(20, int(os.environ.get("TRADELOOP_GATE_NULL_SEEDS", "20"))))


def gate_on_sim(seed: int, structure: float) -> dict:
    venue = SimVenue(anchored_config(seed, "2026-11-01", structure))
    bars = venue.generate_bars(venue.config.origin_ns, DAYS * 1440)
    ds = build_dataset(compute_features(bars, PARAMS), compute_labels(bars))
    train, hold, start = holdout_split(ds.t0, ds.t1, TRAIN.holdout_frac, TRAIN.embargo_bars * 60 * 10**9)
    dev, test = ds.subset(train), ds.subset(hold)
    model = fit_lightgbm(dev, TRAIN)
    evidence = trade_scores(bars.filter(bars["ts"] >= start), test.symbol, test.t0, _scores("lightgbm", model, test.X),
                            LiveRule())
    return gate_decision(evidence.metrics, None, GateConfig())


def test_the_default_market_has_an_edge_the_gate_finds():
    """Not every seed: measured on seeds 1-8 (3 days, this harness) the gate promoted 2, 3 and 4 (t 7.6-8.5)
    and refused the others (a holdout day on which the trained model lost after fees). Those three are
    pinned: the test fails if the structure, the training, the live rule's backtest or the gate stop
    finding an edge that is there."""
    decisions = {seed: gate_on_sim(seed, 1.0) for seed in (2, 3, 4)}
    for seed, d in decisions.items():
        print(seed, d["passed"], d["reason"])
    assert all(d["passed"] for d in decisions.values()), {s: d["reason"] for s, d in decisions.items()}


def test_the_null_market_promotes_nothing_over_many_seeds():
    decisions = {seed: gate_on_sim(seed, 0.0) for seed in NULL_SEEDS}
    passed = {s: d["reason"] for s, d in decisions.items() if d["passed"]}
    print({s: round(d["challenger"]["t_stat"], 2) for s, d in decisions.items()})
    assert len(decisions) >= 20 and not passed, passed
    # refused by the evidence, not by a broken backtest: the candidates traded and paid fees
    assert all(d["challenger"]["n_fills"] > 0 for d in decisions.values())


@pytest.mark.parametrize("structure", [0.0, 1.0])
def test_the_gate_trades_the_live_rule_long_only(structure):
    """No short position ever: the stream's ML slot is long-only by default, and so is the gate's backtest."""
    import numpy as np

    venue = SimVenue(anchored_config(3, "2026-11-01", structure))
    bars = venue.generate_bars(venue.config.origin_ns, 300)
    scores = np.where(np.arange(bars.height) % 7 < 3, -1.0, 1.0)  # half the scores say "short"
    ev = trade_scores(bars, bars["symbol"].to_numpy(), bars["ts"].to_numpy(), scores, LiveRule())
    assert ev.metrics["n_fills"] > 0 and ev.metrics["fees"] > 0
    held: dict[str, float] = {}
    for f in ev.fills:
        held[f.symbol] = held.get(f.symbol, 0.0) + float(f.quantity) * (1 if f.side.value == "buy" else -1)
        assert held[f.symbol] >= -1e-12, f  # never short
    assert set(held) == set(venue.symbols)
