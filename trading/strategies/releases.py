"""The release gate of strategy parameters: does a tuned candidate beat the running release out of sample?

Both parameter sets are run through the walk-forward backtester (trading.backtest.walkforward) on the SAME
test windows, which follow the bars the candidate was tuned on (so neither has seen them), with the rule
the stream trades: the same strategy class, the stream's sizing (``STREAM_FRACTION_PER_SYMBOL`` of equity
per unit of target), the strategy's own direction (long and short as its parameters say), and the paper
venue's fees and impact plus an extra slippage.  The decision is a pure function of the per-window numbers
(``gate_release``), so a recorded decision can be re-derived from its evidence.

Pass, all of:
* mean Sharpe over the windows > the running release's mean Sharpe + ``sharpe_margin``;
* the candidate's Sharpe is higher in at least ``min_win_fraction`` of the windows (one lucky window does
  not carry a mean);
* its worst drawdown in any window is within ``max_drawdown_limit``;
* it traded at least ``min_trades`` times over the windows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from trading.backtest.runner import BacktestConfig
from trading.backtest.walkforward import walk_forward
from trading.sizing import LIVE_FRACTION_PER_SYMBOL, FixedFraction
from trading.strategies.base import StrategyError
from trading.strategies.registry import get_strategy
from trading.venue import FeeSchedule, ImpactModel

# The stream's sizing: this fraction of equity per unit of target, per symbol (streaming/config.py uses it).
STREAM_FRACTION_PER_SYMBOL = LIVE_FRACTION_PER_SYMBOL  # the stream's sizing (trading/sizing.py)


class ReleaseGateError(ValueError):
    """A gate that cannot be run as asked (bad config, too few bars, unknown strategy or parameters)."""


@dataclass(frozen=True)
class ReleaseGateConfig:
    holdout_frac: float = 0.3
    """Share of the bars (the most recent) kept out of tuning; the gate's test windows cover it."""
    n_windows: int = 3
    """Walk-forward test windows in the held-out bars."""
    sharpe_margin: float = 0.0
    """The candidate's mean Sharpe must exceed the running release's by more than this."""
    min_win_fraction: float = 0.5
    """Fewest share of windows in which the candidate's Sharpe is higher."""
    max_drawdown_limit: float = 0.25
    """Largest acceptable drawdown in any window, as a positive fraction."""
    slippage_bps: float = 1.0
    """Extra slippage on every taker fill, on top of the venue's impact model."""
    min_trades: int = 5
    """Fewest trades of the candidate over all windows: parameters that (almost) never trade beat a losing
    release by standing aside, which is no evidence of an edge (the tuner finds such corners)."""

    def check(self) -> None:
        if not 0 < self.holdout_frac < 1:
            raise ReleaseGateError(f"holdout_frac must be in (0, 1), got {self.holdout_frac}")
        if self.n_windows < 1:
            raise ReleaseGateError(f"n_windows must be >= 1, got {self.n_windows}")
        if not 0 <= self.min_win_fraction <= 1:
            raise ReleaseGateError(f"min_win_fraction must be in [0, 1], got {self.min_win_fraction}")
        if not self.max_drawdown_limit > 0:
            raise ReleaseGateError(f"max_drawdown_limit must be > 0, got {self.max_drawdown_limit}")
        if self.min_trades < 0:
            raise ReleaseGateError(f"min_trades must be >= 0, got {self.min_trades}")
        if not (math.isfinite(self.slippage_bps) and self.slippage_bps >= 0):
            raise ReleaseGateError(f"slippage_bps must be a finite number >= 0, got {self.slippage_bps}")


def live_backtest_config(slippage_bps: float) -> BacktestConfig:
    """The stream's trading rule as a backtest: its sizing, the paper venue's fee schedule and impact
    model (the defaults the stream's venue runs with), plus ``slippage_bps``."""
    return BacktestConfig(sizer=FixedFraction(STREAM_FRACTION_PER_SYMBOL), fees=FeeSchedule(),
                          impact=ImpactModel(slippage_bps=slippage_bps), keep_equity=False)


def split_for_tuning(n_rows: int, cfg: ReleaseGateConfig) -> int:
    """Rows [0, n) the candidate may be tuned on; the rest is the gate's out-of-sample part."""
    cfg.check()
    tune_rows = n_rows - int(n_rows * cfg.holdout_frac)
    if (n_rows - tune_rows) // cfg.n_windows < 50:
        raise ReleaseGateError(f"{n_rows} bars leave {(n_rows - tune_rows) // cfg.n_windows}-bar gate windows; "
                               "need at least 50 per window: load more history or use fewer windows")
    return tune_rows


def window_metrics(strategy: str, params: dict[str, Any], bars: pl.DataFrame, cfg: ReleaseGateConfig) -> list[dict[str, float]]:
    """Sharpe, drawdown (positive fraction), return and trades of ``strategy(**params)`` on each gate window
    (walk-forward test windows over the held-out bars; the bars before a window only warm it up)."""
    try:
        cls = get_strategy(strategy)
        cls(**params)  # bad parameters fail here, naming them
    except StrategyError as exc:
        raise ReleaseGateError(str(exc)) from None
    train = split_for_tuning(bars.height, cfg)
    test = (bars.height - train) // cfg.n_windows
    results = walk_forward(bars, lambda _train: cls(**params), train, test, anchored=True,
                           config=live_backtest_config(cfg.slippage_bps))
    out = []
    for wr in results:
        m = wr.result.metrics
        out.append({"window": wr.window.index, "start_ts": int(bars["timestamp"][wr.window.test_start]),
                    "end_ts": int(bars["timestamp"][wr.window.test_end - 1]), "sharpe": _finite(m["sharpe"]),
                    "max_drawdown": abs(_finite(m["max_drawdown"])), "total_return": _finite(m.get("total_return", 0.0)),
                    "n_trades": int(m.get("n_trades", 0))})
    return out


def _finite(x: Any) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0  # a flat window has Sharpe 0; non-finite means nothing traded


def gate_release(candidate: list[dict[str, float]], running: list[dict[str, float]],
                 cfg: ReleaseGateConfig) -> dict[str, Any]:
    """Pure decision on per-window metrics of both on the same windows: ``passed``, ``reason`` and the numbers."""
    out: dict[str, Any] = {"config": asdict(cfg), "candidate": candidate, "running": running}
    if not candidate or len(candidate) != len(running):
        return {**out, "passed": False, "reason": f"windows differ: candidate {len(candidate)}, running {len(running)}"}
    if [w["start_ts"] for w in candidate] != [w["start_ts"] for w in running]:
        return {**out, "passed": False, "reason": "candidate and running release were not run on the same windows"}
    n = len(candidate)
    mean_c = sum(w["sharpe"] for w in candidate) / n
    mean_r = sum(w["sharpe"] for w in running) / n
    wins = sum(1 for c, r in zip(candidate, running) if c["sharpe"] > r["sharpe"])
    worst = max(w["max_drawdown"] for w in candidate)
    out.update(mean_sharpe_candidate=mean_c, mean_sharpe_running=mean_r, windows_won=wins, windows=n,
               worst_drawdown_candidate=worst)
    trades = sum(int(w.get("n_trades", 0)) for w in candidate)
    out["trades_candidate"] = trades
    if trades < cfg.min_trades:
        return {**out, "passed": False, "reason": (
            f"the candidate made {trades} trades in the {n} windows, needs at least {cfg.min_trades}: no evidence")}
    if worst > cfg.max_drawdown_limit:
        return {**out, "passed": False,
                "reason": f"drawdown {worst:.4f} in a window exceeds the limit {cfg.max_drawdown_limit:.4f}"}
    if mean_c <= mean_r + cfg.sharpe_margin:
        return {**out, "passed": False, "reason": (
            f"mean out-of-sample Sharpe {mean_c:.3f} <= running release {mean_r:.3f} + margin {cfg.sharpe_margin:.3f}")}
    if wins < math.ceil(cfg.min_win_fraction * n):
        return {**out, "passed": False,
                "reason": f"better in {wins} of {n} windows, needs {math.ceil(cfg.min_win_fraction * n)}"}
    return {**out, "passed": True, "reason": (
        f"mean out-of-sample Sharpe {mean_c:.3f} > running release {mean_r:.3f} + margin {cfg.sharpe_margin:.3f}, "
        f"better in {wins} of {n} windows")}


def symbols_metrics(strategy: str, params: dict[str, Any], bars: dict[str, pl.DataFrame],
                    cfg: ReleaseGateConfig) -> list[dict[str, float]]:
    """``window_metrics`` on each symbol's bars, as the stream trades a slot on every symbol (each sized on
    its own), combined per window: mean Sharpe and return, worst drawdown, all trades."""
    per = {sym: window_metrics(strategy, params, frame, cfg) for sym, frame in sorted(bars.items())}
    counts = {len(w) for w in per.values()}
    if len(counts) != 1:
        raise ReleaseGateError(f"the symbols give different numbers of gate windows: "
                               f"{ {s: len(w) for s, w in per.items()} }")
    out = []
    for ws in zip(*per.values()):
        # the same windows in time for every symbol (a gap may move a row-based window a little, not half of it)
        starts = {s: per[s][ws[0]["window"]]["start_ts"] for s in per}
        half = (ws[0]["end_ts"] - ws[0]["start_ts"]) // 2
        if max(starts.values()) - min(starts.values()) > half:
            raise ReleaseGateError(f"the symbols' bars do not cover the same times: gate window {ws[0]['window']} "
                                   f"starts at {starts} (ns)")
        out.append({"window": ws[0]["window"], "start_ts": min(w["start_ts"] for w in ws),
                    "end_ts": max(w["end_ts"] for w in ws), "sharpe": sum(w["sharpe"] for w in ws) / len(ws),
                    "max_drawdown": max(w["max_drawdown"] for w in ws),
                    "total_return": sum(w["total_return"] for w in ws) / len(ws),
                    "n_trades": sum(w["n_trades"] for w in ws), "symbols": {s: per[s][ws[0]["window"]] for s in per}})
    return out


def run_gate(strategy: str, candidate: dict[str, Any], running: dict[str, Any],
             bars: pl.DataFrame | dict[str, pl.DataFrame], cfg: ReleaseGateConfig) -> dict[str, Any]:
    """Both parameter sets on the same out-of-sample windows (of one symbol's bars, or of each symbol's in
    ``{symbol: bars}``), then ``gate_release``."""
    if isinstance(bars, dict):
        if not bars:
            raise ReleaseGateError("no symbols to gate on")
        return gate_release(symbols_metrics(strategy, candidate, bars, cfg),
                            symbols_metrics(strategy, running, bars, cfg), cfg)
    return gate_release(window_metrics(strategy, candidate, bars, cfg), window_metrics(strategy, running, bars, cfg), cfg)
