"""Moving-average crossover: long while the fast average is above the slow one, else flat (or short)."""

from __future__ import annotations

import numpy as np
import polars as pl

from trading.indicators import EMA, SMA
from trading.records import Bar
from trading.strategies.base import (
    Context,
    Param,
    ParameterValueError,
    Strategy,
    TargetPosition,
    closes,
    emit_changes,
)


class SmaCross(Strategy):
    name = "sma_cross"
    version = "1"
    params = {
        "fast": Param(int, 10, 1, 10_000, doc="fast average window (bars)"),
        "slow": Param(int, 30, 2, 50_000, doc="slow average window (bars)"),
        "ma": Param("categorical", "sma", choices=("sma", "ema"), doc="kind of moving average"),
        "allow_short": Param("categorical", False, choices=(False, True), doc="short when fast < slow"),
    }

    @classmethod
    def check_params(cls, values: dict) -> None:
        if values["fast"] >= values["slow"]:
            raise ParameterValueError(f"parameter fast={values['fast']} must be smaller than slow={values['slow']}")

    def reset(self) -> None:
        self._sym: dict[str, dict] = {}

    @property
    def warmup_bars(self) -> int:
        return self.p["slow"]

    def _st(self, symbol: str) -> dict:
        st = self._sym.get(symbol)
        if st is None:
            ma = SMA if self.p["ma"] == "sma" else EMA
            st = self._sym[symbol] = {"fast": ma(self.p["fast"]), "slow": ma(self.p["slow"]), "state": 0.0}
        return st

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        st = self._st(bar.symbol)
        c = float(bar.close)
        f, s = st["fast"].update(c), st["slow"].update(c)
        if f is None or s is None:
            return []
        state = 1.0 if f > s else (-1.0 if self.p["allow_short"] else 0.0)
        if state == st["state"]:
            return []
        st["state"] = state
        return [TargetPosition(bar.symbol, state)]

    def target_positions(self, frame: pl.DataFrame, symbol: str) -> np.ndarray:
        st = self._st(symbol)
        c = closes(frame)
        f, s = st["fast"].update_many(c), st["slow"].update_many(c)
        low = -1.0 if self.p["allow_short"] else 0.0
        warm = ~(np.isnan(f) | np.isnan(s))
        states = np.where(f > s, 1.0, low)
        # Before warm-up the state stays where it was.
        states = np.where(warm, states, st["state"])
        out = emit_changes(states, st["state"])
        if len(states):
            st["state"] = float(states[-1])
        return out

    def _state(self) -> dict:
        return {sym: {"fast": st["fast"].snapshot(), "slow": st["slow"].snapshot(), "state": st["state"]} for sym, st in self._sym.items()}

    def _load_state(self, state: dict) -> None:
        for sym, s in state.items():
            st = self._st(sym)
            st["fast"].restore(s["fast"])
            st["slow"].restore(s["slow"])
            st["state"] = s["state"]
