"""Multi-asset rebalancing to target weights (of equity), every ``every`` timestamps.

Weights come from a dict, or from a callable ``weights(ts, ctx) -> dict`` (e.g. a portfolio
optimiser); without either, equal weights over the symbols the engine trades.  A symbol is traded only
when its current weight is more than ``threshold`` away from its target.  Use it with a
fraction-of-equity sizer (the default), so that a target of 0.25 means 25% of equity.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from trading.records import Bar
from trading.strategies.base import Context, Param, ParameterValueError, Strategy, TargetPosition

Weights = dict[str, float] | Callable[[int, Context], dict[str, float]]


class Rebalance(Strategy):
    name = "rebalance"
    version = "1"
    params = {
        "every": Param(int, 1440, 1, 10_000_000, doc="rebalance every N timestamps (bars)"),
        "threshold": Param(float, 0.0, 0.0, 1.0, doc="drift band before trading a symbol"),
    }

    def __init__(self, weights: Weights | None = None, **params: Any) -> None:
        if weights is not None and not callable(weights):
            weights = self._check_weights(weights)
        self.weights = weights
        super().__init__(**params)

    @staticmethod
    def _check_weights(weights: Any) -> dict[str, float]:
        if not isinstance(weights, dict):
            raise ParameterValueError(f"weights must be a dict or a callable, got {type(weights).__name__}")
        out = {}
        for sym, w in weights.items():
            try:
                w = float(w)
            except (TypeError, ValueError):
                raise ParameterValueError(f"weight for {sym!r} is not a number: {w!r}") from None
            if not math.isfinite(w):
                raise ParameterValueError(f"weight for {sym!r} must be finite, got {w!r}")
            out[str(sym)] = w
        return out

    def reset(self) -> None:
        self._last_ts: int | None = None
        self._count = 0

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        if bar.exchange_ts == self._last_ts:
            return []  # one decision per timestamp, whichever symbol's bar comes first
        self._last_ts = bar.exchange_ts
        self._count += 1
        if (self._count - 1) % self.p["every"]:
            return []
        if callable(self.weights):
            weights = self._check_weights(self.weights(bar.exchange_ts, ctx))
        elif self.weights is not None:
            weights = self.weights
        else:
            syms = ctx.symbols()
            weights = {s: 1.0 / len(syms) for s in syms}
        equity = float(ctx.equity())
        out = []
        for sym in sorted(weights):
            price = ctx.price(sym)
            if price is None:
                continue  # no price yet: cannot size it; next rebalance will
            current = float(ctx.position(sym) * price) / equity if equity > 0 else 0.0
            if self.p["threshold"] == 0.0 or abs(current - weights[sym]) > self.p["threshold"]:
                out.append(TargetPosition(sym, weights[sym]))
        for sym in ctx.symbols():  # held but no longer wanted: close it
            if sym not in weights and ctx.position(sym) != 0:
                out.append(TargetPosition(sym, 0.0))
        return out

    def _state(self) -> dict:
        return {"last_ts": self._last_ts, "count": self._count}

    def _load_state(self, state: dict) -> None:
        self._last_ts, self._count = state["last_ts"], state["count"]
