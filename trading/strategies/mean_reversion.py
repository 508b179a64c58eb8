"""Bollinger mean reversion: buy when price is ``entry_z`` standard deviations below its mean (short when
above, if allowed), go flat once it is back within ``exit_z`` of the mean.  Optional RSI filter: enter
long only if RSI < ``rsi_low``, short only if RSI > ``rsi_high``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from trading.indicators import RSI, ZScore
from trading.records import Bar
from trading.strategies.base import (
    Context,
    Param,
    ParameterValueError,
    Strategy,
    TargetPosition,
    closes,
    emit_changes,
    forward_fill,
)


class MeanReversion(Strategy):
    name = "mean_reversion"
    version = "1"
    params = {
        "window": Param(int, 20, 2, 10_000, doc="Bollinger window (bars)"),
        "entry_z": Param(float, 2.0, 0.1, 10.0, doc="enter beyond this many std devs"),
        "exit_z": Param(float, 0.5, 0.0, 10.0, doc="exit within this many std devs"),
        "use_rsi": Param("categorical", False, choices=(False, True)),
        "rsi_window": Param(int, 14, 2, 1_000),
        "rsi_low": Param(float, 30.0, 0.0, 100.0),
        "rsi_high": Param(float, 70.0, 0.0, 100.0),
        "allow_short": Param("categorical", False, choices=(False, True)),
    }

    @classmethod
    def check_params(cls, values: dict) -> None:
        if values["exit_z"] >= values["entry_z"]:
            raise ParameterValueError(f"parameter exit_z={values['exit_z']} must be smaller than entry_z={values['entry_z']}")
        if values["rsi_low"] >= values["rsi_high"]:
            raise ParameterValueError(f"parameter rsi_low={values['rsi_low']} must be smaller than rsi_high={values['rsi_high']}")

    def reset(self) -> None:
        self._sym: dict[str, dict] = {}

    @property
    def warmup_bars(self) -> int:
        return max(self.p["window"], self.p["rsi_window"] + 1 if self.p["use_rsi"] else 0)

    def _st(self, symbol: str) -> dict:
        st = self._sym.get(symbol)
        if st is None:
            st = self._sym[symbol] = {"z": ZScore(self.p["window"]), "rsi": RSI(self.p["rsi_window"]), "state": 0.0}
        return st

    def _code(self, z: float, r: float) -> float | None:
        """New state implied by this bar, or None for "keep the current one"."""
        p = self.p
        rsi_ok_long = not p["use_rsi"] or r < p["rsi_low"]
        rsi_ok_short = not p["use_rsi"] or r > p["rsi_high"]
        if z < -p["entry_z"] and rsi_ok_long:
            return 1.0
        if z > p["entry_z"] and rsi_ok_short:
            return -1.0 if p["allow_short"] else 0.0
        if abs(z) < p["exit_z"]:
            return 0.0
        return None

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        st = self._st(bar.symbol)
        c = float(bar.close)
        z, r = st["z"].update(c), st["rsi"].update(c)
        if z is None or (self.p["use_rsi"] and r is None):
            return []
        code = self._code(z, r if r is not None else 50.0)
        if code is None or code == st["state"]:
            return []
        st["state"] = code
        return [TargetPosition(bar.symbol, code)]

    def target_positions(self, frame: pl.DataFrame, symbol: str) -> np.ndarray:
        st = self._st(symbol)
        p = self.p
        c = closes(frame)
        z, r = st["z"].update_many(c), st["rsi"].update_many(c)
        warm = ~np.isnan(z) & (~np.isnan(r) if p["use_rsi"] else True)
        r = np.where(np.isnan(r), 50.0, r)
        ok_long = (r < p["rsi_low"]) if p["use_rsi"] else np.ones(len(c), bool)
        ok_short = (r > p["rsi_high"]) if p["use_rsi"] else np.ones(len(c), bool)
        codes = np.full(len(c), np.nan)
        codes[np.abs(z) < p["exit_z"]] = 0.0
        codes[(z > p["entry_z"]) & ok_short] = -1.0 if p["allow_short"] else 0.0
        codes[(z < -p["entry_z"]) & ok_long] = 1.0  # same precedence as _code: long entry first
        codes[~warm] = np.nan
        states = forward_fill(codes, st["state"])
        out = emit_changes(states, st["state"])
        if len(states):
            st["state"] = float(states[-1])
        return out

    def _state(self) -> dict:
        return {s: {"z": v["z"].snapshot(), "rsi": v["rsi"].snapshot(), "state": v["state"]} for s, v in self._sym.items()}

    def _load_state(self, state: dict) -> None:
        for sym, s in state.items():
            st = self._st(sym)
            st["z"].restore(s["z"])
            st["rsi"].restore(s["rsi"])
            st["state"] = s["state"]
