"""Donchian breakout: go long when the close breaks above the highest high of the previous ``window``
bars; exit when it breaks below the lowest low of the previous ``exit_window`` bars.  With
``allow_short`` it is a stop-and-reverse system on the ``window`` channel (long above, short below).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from trading.indicators import Donchian
from trading.records import Bar
from trading.strategies.base import Context, Param, Strategy, TargetPosition, column, emit_changes, forward_fill


class Breakout(Strategy):
    name = "breakout"
    version = "1"
    params = {
        "window": Param(int, 20, 2, 10_000, doc="entry channel (bars)"),
        "exit_window": Param(int, 10, 2, 10_000, doc="exit channel for longs (bars)"),
        "allow_short": Param("categorical", False, choices=(False, True)),
    }

    def reset(self) -> None:
        self._sym: dict[str, dict] = {}

    @property
    def warmup_bars(self) -> int:
        return max(self.p["window"], self.p["exit_window"]) + 1

    def _st(self, symbol: str) -> dict:
        st = self._sym.get(symbol)
        if st is None:
            # Channels as of the previous bar: a breakout compares today's close with yesterday's channel.
            st = self._sym[symbol] = {
                "entry": Donchian(self.p["window"]),
                "exit": Donchian(self.p["exit_window"]),
                "prev": [np.nan, np.nan, np.nan],  # entry upper, entry lower, exit lower
                "state": 0.0,
            }
        return st

    def _code(self, c: float, up: float, lo: float, exit_lo: float) -> float | None:
        if c > up:
            return 1.0
        if self.p["allow_short"]:
            return -1.0 if c < lo else None
        return 0.0 if c < exit_lo else None

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        st = self._st(bar.symbol)
        h, lo, c = float(bar.high), float(bar.low), float(bar.close)
        up_p, lo_p, xlo_p = st["prev"]
        e, x = st["entry"].update(h, lo), st["exit"].update(h, lo)
        st["prev"] = [np.nan if e is None else e.upper, np.nan if e is None else e.lower, np.nan if x is None else x.lower]
        if np.isnan(up_p) or np.isnan(xlo_p):
            return []
        code = self._code(c, up_p, lo_p, xlo_p)
        if code is None or code == st["state"]:
            return []
        st["state"] = code
        return [TargetPosition(bar.symbol, code)]

    def target_positions(self, frame: pl.DataFrame, symbol: str) -> np.ndarray:
        st = self._st(symbol)
        h, lo, c = column(frame, "high"), column(frame, "low"), column(frame, "close")
        up, dn = st["entry"].update_many(h, lo)
        _, xdn = st["exit"].update_many(h, lo)
        n = len(c)
        if n == 0:
            return np.empty(0)
        prev = st["prev"]
        up_p = np.concatenate(([prev[0]], up[:-1]))
        dn_p = np.concatenate(([prev[1]], dn[:-1]))
        xdn_p = np.concatenate(([prev[2]], xdn[:-1]))
        st["prev"] = [float(up[-1]), float(dn[-1]), float(xdn[-1])]
        codes = np.full(n, np.nan)
        if self.p["allow_short"]:
            codes[c < dn_p] = -1.0
        else:
            codes[c < xdn_p] = 0.0
        codes[c > up_p] = 1.0
        codes[np.isnan(up_p) | np.isnan(xdn_p)] = np.nan
        states = forward_fill(codes, st["state"])
        out = emit_changes(states, st["state"])
        st["state"] = float(states[-1])
        return out

    def _state(self) -> dict:
        return {
            s: {"entry": v["entry"].snapshot(), "exit": v["exit"].snapshot(), "prev": list(v["prev"]), "state": v["state"]}
            for s, v in self._sym.items()
        }

    def _load_state(self, state: dict) -> None:
        for sym, s in state.items():
            st = self._st(sym)
            st["entry"].restore(s["entry"])
            st["exit"].restore(s["exit"])
            st["prev"], st["state"] = list(s["prev"]), s["state"]
