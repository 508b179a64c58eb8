"""Strategy interface: parameters, registry, snapshot/restore, vectorised == incremental decisions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trading.strategies import (
    Param,
    ParameterValueError,
    Strategy,
    UnknownParameterError,
    UnknownStrategyError,
    available_strategies,
    create_strategy,
    get_strategy,
)
from trading.strategies.engine import make_bar

from tests.trading.bars import random_bars
from tests.trading.context import FlatContext


def _bars_of(frame):
    cols = [frame[k].to_numpy() for k in ("timestamp", "open", "high", "low", "close", "volume")]
    return [make_bar("sim", "BTC/USDT", "1m", *(c[i] for c in cols)) for i in range(frame.height)]


def _incremental(strategy, frame):
    out = np.full(frame.height, np.nan)
    for i, bar in enumerate(_bars_of(frame)):
        for t in strategy.on_bar(bar, FlatContext()):
            out[i] = t.target
    return out


FAST = [
    ("sma_cross", {"fast": 5, "slow": 20}),
    ("sma_cross", {"fast": 8, "slow": 21, "ma": "ema", "allow_short": True}),
    ("mean_reversion", {"window": 20, "entry_z": 1.5, "exit_z": 0.3}),
    ("mean_reversion", {"window": 15, "entry_z": 1.2, "exit_z": 0.2, "use_rsi": True, "rsi_low": 45,
                        "rsi_high": 55, "allow_short": True}),
    ("breakout", {"window": 20, "exit_window": 10}),
    ("breakout", {"window": 15, "exit_window": 5, "allow_short": True}),
]


@pytest.mark.parametrize("name,params", FAST, ids=[f"{n}-{i}" for i, (n, _) in enumerate(FAST)])
def test_vectorised_decisions_equal_incremental(name, params):
    frame = random_bars(2500, seed=3)
    expected = _incremental(create_strategy(name, params), frame)
    s = create_strategy(name, params)
    parts = [s.target_positions(frame.slice(a, b - a), "BTC/USDT") for a, b in [(0, 3), (3, 700), (700, 701), (701, 2500)]]
    got = np.concatenate(parts)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.count_nonzero(~np.isnan(got)) >= 4  # the strategy actually trades on this data


@pytest.mark.parametrize("name,params", FAST, ids=[f"{n}-{i}" for i, (n, _) in enumerate(FAST)])
def test_snapshot_restore_continues_identically(name, params):
    frame = random_bars(1200, seed=4)
    a = create_strategy(name, params)
    a.target_positions(frame.slice(0, 600), "BTC/USDT")
    snap = json.loads(json.dumps(a.snapshot()))  # must survive JSON (persisted by the stream)
    b = create_strategy(name, {})
    b.restore(snap)
    assert b.p == a.p
    rest = frame.slice(600)
    assert np.array_equal(_incremental(a, rest), _incremental(b, rest), equal_nan=True)


def test_registry_lists_builtins_and_rejects_unknown():
    assert {"sma_cross", "mean_reversion", "breakout", "rebalance", "ml_signal"} <= set(available_strategies())
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'nope'"):
        get_strategy("nope")
    assert get_strategy("trading.strategies.sma_cross:SmaCross").name == "sma_cross"
    with pytest.raises(UnknownStrategyError, match="is not a Strategy"):
        get_strategy("trading.strategies.base:Param")


def test_parameters_are_validated_and_parsed():
    s = create_strategy("sma_cross", {"fast": "7", "slow": "30", "ma": "EMA", "allow_short": "true"})
    assert s.p == {"fast": 7, "slow": 30, "ma": "ema", "allow_short": True}
    cases = [
        ({"speed": 3}, UnknownParameterError, "unknown parameter 'speed'"),
        ({"fast": 0}, ParameterValueError, "fast=0 is out of range"),
        ({"fast": "abc"}, ParameterValueError, "fast='abc' is not a valid int"),
        ({"fast": 2.5}, ParameterValueError, "fast=2.5 is not a valid int"),
        ({"ma": "wma"}, ParameterValueError, "ma='wma' is not one of"),
        ({"fast": 30, "slow": 10}, ParameterValueError, "fast=30 must be smaller than slow=10"),
    ]
    for params, exc, msg in cases:
        with pytest.raises(exc, match=msg.replace("(", r"\(").replace("[", r"\[")):
            create_strategy("sma_cross", params)
    with pytest.raises(ParameterValueError, match="entry_z=nan must be finite|entry_z='nan' must be finite"):
        create_strategy("mean_reversion", {"entry_z": "nan"})
    with pytest.raises(ParameterValueError, match="exit_z=3.0 must be smaller than entry_z=2.0"):
        create_strategy("mean_reversion", {"exit_z": 3})


def test_params_map_onto_optuna_trials():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = get_strategy("sma_cross")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(5):
        trial = study.ask()
        values = {k: p.suggest(trial, k) for k, p in cls.params.items()}
        seen.append(values)
        study.tell(trial, 0.0)
    for v in seen:
        assert 1 <= v["fast"] <= 10_000 and v["ma"] in ("sma", "ema") and v["allow_short"] in (False, True)
    # windows spanning decades are drawn on a log scale: most draws are short windows, not ~5,000-bar ones
    fast = [p.suggest(t, "fast") for p, t in ((cls.params["fast"], study.ask()) for _ in range(200))]
    assert sum(f <= 100 for f in fast) > 100, sorted(fast)[100]
    assert study.trials[-1].distributions["fast"].log
    with pytest.raises(ValueError, match="categorical Param needs choices"):
        Param("categorical", "x")


def test_ml_signal_thresholds_model_score():
    class Const:
        def __init__(self, v):
            self.v = v

        def predict(self, X):
            assert X.shape == (1, 3)
            return np.array([self.v])

    bars = _bars_of(random_bars(40, seed=5))
    for score, short, expected in [(0.5, False, 1.0), (-0.5, True, -1.0), (-0.5, False, None)]:
        s = create_strategy("ml_signal", {"lookback": 10, "long_threshold": 0.1, "short_threshold": -0.1,
                                          "allow_short": short}, model=Const(score))
        outs = [t.target for b in bars for t in s.on_bar(b, FlatContext())]
        assert outs == ([] if expected is None else [expected])  # one decision once warm, then none
    with pytest.raises(ParameterValueError, match="has no predict"):
        create_strategy("ml_signal", {}, model=object())
    # The default momentum model: long exactly when the lookback return is positive.
    frame = random_bars(300, seed=6)
    s = create_strategy("ml_signal", {"lookback": 20})
    c = frame["close"].to_numpy()
    state = 0.0
    for i, b in enumerate(_bars_of(frame)):
        for t in s.on_bar(b, FlatContext()):
            state = t.target
        if i >= 19:
            assert state == (1.0 if c[i] / c[i - 19] - 1 > 0 else 0.0)


def test_strategy_base_defaults_and_bad_restore():
    class Quiet(Strategy):
        name = "quiet"

    q = Quiet()
    assert q.on_bar(None, None) == [] and q.target_positions(None, "X") is None
    with pytest.raises(ValueError, match="snapshot is of strategy 'sma_cross', not 'quiet'"):
        q.restore(create_strategy("sma_cross").snapshot())
