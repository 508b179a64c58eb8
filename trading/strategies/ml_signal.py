"""Model-driven signal: ``score = model.predict(features(history))`` thresholded to long / flat / short.

``model`` is any object with ``predict(X)`` taking a 2-D array (one row of features, as scikit-learn
models do) and returning a score (scalar or length-1 array).  ``features(history)`` receives a dict of
numpy arrays (open, high, low, close, volume) holding the last ``lookback`` bars and returns a
sequence of floats.  Defaults: ``momentum_features`` and ``MomentumModel`` (score = lookback return),
so that the strategy runs out of the box.

``direction`` is the one trading rule of a model score (long / flat / short); the stream's registry-backed
strategy (streaming/ml_strategy.py) and the promotion gate (``ScoredSignal`` replaying a model's scores
through the backtester, ml/gate.py) call it, so the gate judges the rule the stream trades.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Sequence

import numpy as np

from trading.records import Bar
from trading.strategies.base import Context, Param, ParameterValueError, Strategy, StrategyError, TargetPosition

FIELDS = ("open", "high", "low", "close", "volume")


def momentum_features(history: dict[str, np.ndarray]) -> list[float]:
    """[last bar return, return over the window, close z-score within the window]."""
    c = history["close"]
    std = float(c.std())
    return [c[-1] / c[-2] - 1.0, c[-1] / c[0] - 1.0, 0.0 if std == 0.0 else float((c[-1] - c.mean()) / std)]


def direction(score: float, p: dict[str, Any]) -> float:
    """The target of a score under MLSignal parameters ``p``: +1 above ``long_threshold``, -1 below
    ``short_threshold`` when ``allow_short`` (else flat), 0 in between."""
    if score > p["long_threshold"]:
        return 1.0
    if score < p["short_threshold"]:
        return -1.0 if p["allow_short"] else 0.0
    return 0.0


class MomentumModel:
    """Score = the window return (feature 1): a transparent default, not a fitted model."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=float)[:, 1]


class MLSignal(Strategy):
    name = "ml_signal"
    version = "1"
    params = {
        "lookback": Param(int, 30, 2, 100_000, doc="bars of history given to the feature function"),
        "long_threshold": Param(float, 0.0, -1e12, 1e12, doc="score above this -> long"),
        "short_threshold": Param(float, 0.0, -1e12, 1e12, doc="score below this -> short (or flat)"),
        "allow_short": Param("categorical", False, choices=(False, True)),
    }

    def __init__(self, model: Any = None, features: Callable[[dict], Sequence[float]] | None = None, **params: Any) -> None:
        self.model = MomentumModel() if model is None else model
        if not callable(getattr(self.model, "predict", None)):
            raise ParameterValueError(f"model {type(self.model).__name__} has no predict() method")
        self.features = momentum_features if features is None else features
        super().__init__(**params)

    @classmethod
    def check_params(cls, values: dict) -> None:
        if values["short_threshold"] > values["long_threshold"]:
            raise ParameterValueError(
                f"parameter short_threshold={values['short_threshold']} must not exceed long_threshold={values['long_threshold']}"
            )

    def reset(self) -> None:
        self._sym: dict[str, dict] = {}

    @property
    def warmup_bars(self) -> int:
        return self.p["lookback"]

    def score(self, history: dict[str, np.ndarray]) -> float:
        feats = np.asarray(self.features(history), dtype=float)
        if feats.ndim != 1 or not np.isfinite(feats).all():
            raise StrategyError(f"feature function returned {feats!r}: need a flat sequence of finite floats")
        out = np.ravel(np.asarray(self.model.predict(feats[None, :]), dtype=float))
        if out.size != 1 or not np.isfinite(out[0]):
            raise StrategyError(f"model.predict returned {out!r}: need one finite score")
        return float(out[0])

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        st = self._sym.get(bar.symbol)
        if st is None:
            st = self._sym[bar.symbol] = {"hist": deque(maxlen=self.p["lookback"]), "state": 0.0}
        st["hist"].append(tuple(float(getattr(bar, f)) for f in FIELDS))
        if len(st["hist"]) < self.p["lookback"]:
            return []
        arr = np.array(st["hist"])
        s = self.score({f: arr[:, i] for i, f in enumerate(FIELDS)})
        state = direction(s, self.p)
        if state == st["state"]:
            return []
        st["state"] = state
        return [TargetPosition(bar.symbol, state)]

    def _state(self) -> dict:
        return {s: {"hist": [list(r) for r in v["hist"]], "state": v["state"]} for s, v in self._sym.items()}

    def _load_state(self, state: dict) -> None:
        for sym, s in state.items():
            self._sym[sym] = {"hist": deque((tuple(r) for r in s["hist"]), maxlen=self.p["lookback"]), "state": s["state"]}


class ScoredSignal(Strategy):
    """MLSignal's rule on scores a model gave beforehand: ``scores[symbol][bar open ts] = score``.

    The promotion gate replays a model's scores of a window through the backtester with this, so the
    decisions are the stream's (``direction``, a target only when it changes); a bar without a score
    (a warming-up feature) keeps the last target, as the stream gives none then."""

    name = "ml_scored"
    version = "1"
    params = {k: v for k, v in MLSignal.params.items() if k != "lookback"}

    def __init__(self, scores: dict[str, dict[int, float]], **params: Any) -> None:
        self.scores = scores
        super().__init__(**params)

    check_params = MLSignal.check_params

    def reset(self) -> None:
        self._target: dict[str, float] = {}

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        s = self.scores.get(bar.symbol, {}).get(bar.exchange_ts)
        if s is None:
            return []
        target = direction(s, self.p)
        if self._target.get(bar.symbol) == target:
            return []
        self._target[bar.symbol] = target
        return [TargetPosition(bar.symbol, target)]
