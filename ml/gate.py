"""The promotion gate's evidence: a model's scores of a window traded the way the stream trades them.

The stream (streaming/ml_strategy.py) turns each closed bar's score into a target with
``trading.strategies.ml_signal.direction`` (long above ``long_threshold``; short only when
``allow_short``: by default long-only), sends an order only when the target changes, sizes it with
``FixedFraction(LIVE_FRACTION_PER_SYMBOL)`` and fills it at the next print on a paper venue with the
default ``FeeSchedule``.  Here the same scores go through ``ScoredSignal`` (that rule) in the backtester
(StrategyEngine, PaperVenue filling at the next bar's open, the same sizer and fee schedule, plus
``slippage_bps`` and the square-root impact model), and the per-bar returns of the account's equity are
the evidence: Sharpe, drawdown, and the t statistic the gate requires (ml/registry.py).

Pure (no MLflow, no SQL): the asset loads bars and scores, the tests call it on simulated data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True)
class LiveRule:
    """How the stream trades a model: its ML slot's MLSignal parameters, sizing and costs."""

    params: dict[str, Any] = field(default_factory=dict)
    """MLSignal parameters of the stream's ML slot (long_threshold, short_threshold, allow_short); {} = defaults."""
    fraction: float | None = None
    """Equity per symbol and unit of target; None: the stream's (trading.sizing.LIVE_FRACTION_PER_SYMBOL)."""
    cash: float = 100_000.0
    """Starting equity of the backtest (the account's starting cash)."""
    slippage_bps: float = 1.0
    """Adverse move paid on every fill on top of the fee (the stream fills at the next print)."""

    def fraction_used(self) -> float:
        from trading.sizing import LIVE_FRACTION_PER_SYMBOL

        return LIVE_FRACTION_PER_SYMBOL if self.fraction is None else self.fraction

    def strategy_params(self) -> dict[str, Any]:
        from trading.strategies.ml_signal import ScoredSignal

        return ScoredSignal.validate_params({k: v for k, v in self.params.items() if k in ScoredSignal.params})


@dataclass
class Evidence:
    metrics: dict[str, float]
    ts: np.ndarray  # bar times of the returns
    returns: np.ndarray  # per-bar return of the account's equity
    fills: list = field(default_factory=list, repr=False)  # the backtest's fills (trading.records.Fill)


def trade_scores(bars: pl.DataFrame, symbol: np.ndarray, t0: np.ndarray, scores: np.ndarray, rule: LiveRule,
                 exchange: str = "sim") -> Evidence:
    """Backtest ``scores`` (one per (symbol, bar open ts)) on ``bars`` (symbol, ts, open, high, low, close,
    volume) with the live rule.  Metrics: sharpe, max_drawdown, total_return, volatility, exposure, n_fills,
    fees, t_stat (mean per-bar return / its standard error)."""
    from trading.backtest.runner import BacktestConfig, run_backtest
    from trading.sizing import FixedFraction
    from trading.strategies.ml_signal import ScoredSignal
    from trading.venue import FeeSchedule, ImpactModel

    book: dict[str, dict[int, float]] = {}
    for s, t, v in zip(symbol.tolist(), t0.tolist(), np.asarray(scores, dtype=float).tolist()):
        book.setdefault(s, {})[int(t)] = v
    frame = (bars.filter(pl.col("symbol").is_in(sorted(book)))
             .select(pl.col("ts").cast(pl.Int64).alias("timestamp"), "symbol",
                     *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")])
             .sort("timestamp", "symbol"))
    strat = ScoredSignal(book, **rule.strategy_params())
    cfg = BacktestConfig(cash=Decimal(str(rule.cash)), fees=FeeSchedule(), impact=ImpactModel(slippage_bps=rule.slippage_bps),
                         exchange=exchange, sizer=FixedFraction(rule.fraction_used()), fast=False)
    res = run_backtest(frame, strat, cfg)
    eq = res.equity["equity"].to_numpy()
    ts = res.equity["timestamp"].to_numpy()
    rets = np.diff(eq) / eq[:-1] if len(eq) > 1 else np.empty(0)
    m = res.metrics
    out = {k: float(m[k]) for k in ("sharpe", "max_drawdown", "total_return", "volatility", "exposure")}
    out.update(n_fills=float(m["n_fills"]), fees=float(m["fees"]), t_stat=t_stat(rets), n_bars=float(len(rets)))
    return Evidence(out, ts[1:], rets, res.fills)


def t_stat(x: np.ndarray) -> float:
    """Mean / standard error (0 when the returns do not vary, e.g. a model that never trades)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return 0.0
    sd = float(x.std(ddof=1))
    return 0.0 if not sd > 0 else float(x.mean()) / sd * math.sqrt(x.size)


def paired_t_stat(champion: Evidence, challenger: Evidence) -> float:
    """The shadow comparison's paired t statistic (ml/shadow.py) on the two backtests' per-bar returns."""
    from ml.shadow import compare

    if not np.array_equal(champion.ts, challenger.ts):
        raise ValueError("paired returns need the same bars: the two backtests cover different timestamps")
    res = compare(champion.returns, challenger.returns, min_n=3)
    if math.isnan(res.t_stat):  # the differences do not vary: identical decisions, or a constant shift
        return 0.0 if res.mean_diff == 0 else math.copysign(1e9, res.mean_diff)
    return float(res.t_stat)
