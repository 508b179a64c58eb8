"""Event-driven backtests of strategies on bars: StrategyEngine + PaperVenue (bar mode) + Portfolio.

Two paths, identical fills:

* fast -- one symbol, strategies with vectorised ``target_positions``, no risk engine: signals are
  computed per chunk in bulk and Python runs only at bars with a decision or an open order;
* event -- everything else: every timestamp's bars go through ``StrategyEngine.on_bars``, exactly as
  the live stream feeds them.

Bars are processed in chunks; the equity curve and metrics are computed per chunk with numpy from
the fills (cash + quantity x close), so no per-bar Python objects are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Callable, Mapping

import numpy as np
import polars as pl

from trading.backtest.data import DataError, infer_interval
from trading.backtest.metrics import EquityStats, trade_metrics
from trading.backtest.trades import Trade, round_trips
from trading.ledger import PREC, Portfolio, fee_terms
from trading.marketdata.timeframes import interval_ns
from trading.ports import Clock, RiskGate
from trading.records import Fill, Instrument
from trading.sizing import Sizer
from trading.strategies.base import Strategy
from trading.strategies.engine import StrategyEngine, make_bar
from trading.venue import FeeSchedule, ImpactModel, PaperVenue


@dataclass
class BacktestConfig:
    cash: Decimal = Decimal("10000")
    fee_bps: float = 0.0  # maker and taker, unless ``fees`` is given
    fees: FeeSchedule | None = None
    impact: ImpactModel | None = None  # default: no slippage or impact
    fill: str = "next_open"
    exchange: str = "sim"
    account: str = "backtest"
    sizer: Sizer | None = None  # default: fraction of equity 1.0 per unit of target
    instruments: Mapping[str, Instrument] | None = None
    risk: RiskGate | None = None  # e.g. a trading.risk.RiskEngine; forces the event path
    clock: Clock | None = None  # the risk gate's clock (trading.clock.BarClock), advanced bar by bar
    chunk_size: int = 131_072
    keep_equity: bool = True
    fast: bool = True  # use the fast path when the strategy allows it
    trade_from_ts: int | None = None  # decisions up to this time only warm up; metrics start here


@dataclass
class BacktestResult:
    metrics: dict[str, Any]
    trades: list[Trade]
    fills: list[Fill]
    equity: pl.DataFrame | None  # timestamp (ns), equity
    rejected: dict[str, int]
    path: str  # "fast" or "event"
    engine: StrategyEngine = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-friendly: non-finite metrics become None."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.metrics.items()}
        return {"metrics": clean, "trades": [t.as_dict() for t in self.trades], "rejected": dict(self.rejected), "path": self.path}


class _EquityBook:
    """Cash and position quantities, advanced by fills, for the vectorised equity curve (the Portfolio
    books the fills themselves; this keeps only what the curve needs, with the ledger's fee rule)."""

    def __init__(self, cash: Decimal) -> None:
        self.cash = cash
        self.qty: dict[str, Decimal] = {}
        self.fees = Decimal(0)
        self.notional = Decimal(0)

    def apply(self, f: Fill) -> None:
        signed = f.quantity * f.side.sign
        with localcontext() as ctx:
            ctx.prec = PREC  # as the Portfolio does: exact sums
            fee, fee_base = fee_terms(f)
            self.cash -= signed * f.price + fee - fee_base * f.price
            self.qty[f.symbol] = self.qty.get(f.symbol, Decimal(0)) + signed - fee_base
        self.fees += fee
        self.notional += f.price * f.quantity


def _strategies(strategy: Strategy | Mapping[str, Strategy]) -> dict[str, Strategy]:
    return {strategy.name: strategy} if isinstance(strategy, Strategy) else dict(strategy)


def run_backtest(
    bars: pl.DataFrame,
    strategy: Strategy | Mapping[str, Strategy],
    config: BacktestConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` (or named slots of strategies) on validated bars (see ``data.load_bars``)."""
    cfg = config or BacktestConfig()
    if bars.height == 0:
        raise DataError("no bars to backtest")
    if cfg.chunk_size < 1:
        raise DataError(f"chunk_size must be >= 1, got {cfg.chunk_size}")
    slots = _strategies(strategy)
    interval = infer_interval(bars)
    symbols = bars["symbol"].unique(maintain_order=True).to_list()
    instruments = dict(cfg.instruments or {})
    for s in symbols:
        instruments.setdefault(s, Instrument(cfg.exchange, s))
    fees = cfg.fees or FeeSchedule(maker_bps=cfg.fee_bps, taker_bps=cfg.fee_bps)
    venue = PaperVenue(cfg.exchange, instruments, fees, cfg.impact or ImpactModel(coefficient=0.0), None, "bar", cfg.fill)
    portfolio = Portfolio(cfg.account, cfg.cash)
    engine = StrategyEngine(venue, portfolio, slots, account=cfg.account, exchange=cfg.exchange, instruments=instruments,
                            sizer=cfg.sizer, risk=cfg.risk, trade_from_ts=cfg.trade_from_ts, clock=cfg.clock)
    stats = EquityStats(float(cfg.cash), interval_ns(interval))
    ledger = _EquityBook(cfg.cash)
    curve: list[tuple[np.ndarray, np.ndarray]] = []
    fast = (cfg.fast and cfg.risk is None and len(symbols) == 1 and len(slots) == 1
            and type(next(iter(slots.values()))).target_positions is not Strategy.target_positions)
    sink = _Sink(stats, curve if cfg.keep_equity else None, cfg.trade_from_ts)
    if fast:
        _run_fast(bars, engine, symbols[0], interval, cfg.chunk_size, ledger, sink, progress)
    else:
        _run_events(bars, engine, interval, cfg.chunk_size, ledger, sink, progress)
    trades = round_trips(engine.fills)
    closed = [float(t.pnl) for t in trades if not t.is_open]
    m = stats.metrics()
    final_equity = portfolio.equity()
    mean_equity = sink.sum_equity / max(1, stats.n)
    m.update(trade_metrics(closed))
    m.update(
        {
            "final_equity": float(final_equity),
            "fees": float(ledger.fees),
            "turnover": float(ledger.notional) / mean_equity if mean_equity > 0 else 0.0,
            "n_trades": len(closed),
            "n_open_trades": len(trades) - len(closed),
            "n_fills": len(engine.fills),
            "n_orders": engine.n_orders,
            "n_rejected": sum(engine.rejected.values()),
            "interval": interval,
        }
    )
    equity = None
    if cfg.keep_equity:
        ts = np.concatenate([c[0] for c in curve]) if curve else np.empty(0, np.int64)
        eq = np.concatenate([c[1] for c in curve]) if curve else np.empty(0)
        equity = pl.DataFrame({"timestamp": ts, "equity": eq})
    return BacktestResult(m, trades, engine.fills, equity, dict(engine.rejected), "fast" if fast else "event", engine)


class _Sink:
    """Receives per-chunk equity and feeds the statistics (and the kept curve)."""

    def __init__(self, stats: EquityStats, curve: list | None, from_ts: int | None) -> None:
        self.stats, self.curve, self.from_ts = stats, curve, from_ts
        self.sum_equity = 0.0

    def add(self, ts: np.ndarray, equity: np.ndarray, exposed: np.ndarray) -> None:
        if self.from_ts is not None:
            keep = ts >= self.from_ts
            ts, equity, exposed = ts[keep], equity[keep], exposed[keep]
        self.stats.update(ts, equity, exposed)
        self.sum_equity += float(equity.sum())
        if self.curve is not None:
            self.curve.append((ts, equity))


def _run_fast(bars, engine, symbol, interval, chunk_size, ledger, sink, progress) -> None:
    for start in range(0, bars.height, chunk_size):
        chunk = bars.slice(start, chunk_size)
        fills = engine.run_fast(chunk, symbol, interval)
        close = chunk["close"].to_numpy()
        n = len(close)
        # State after each fill bar, then forward-filled over the chunk.
        q0, c0 = float(ledger.qty.get(symbol, 0)), float(ledger.cash)
        at, qs, cs = [], [], []
        for i, f in fills:
            ledger.apply(f)
            if at and at[-1] == i:
                qs[-1], cs[-1] = float(ledger.qty[symbol]), float(ledger.cash)
            else:
                at.append(i)
                qs.append(float(ledger.qty[symbol]))
                cs.append(float(ledger.cash))
        idx = np.searchsorted(np.asarray(at, dtype=np.int64), np.arange(n), side="right")
        qty = np.concatenate(([q0], qs))[idx]
        cash = np.concatenate(([c0], cs))[idx]
        sink.add(chunk["timestamp"].to_numpy(), cash + qty * close, qty != 0.0)
        if progress:
            progress(n)


def _run_events(bars, engine, interval, chunk_size, ledger, sink, progress) -> None:
    ts_all = bars["timestamp"].to_numpy()
    starts = np.flatnonzero(np.diff(ts_all, prepend=ts_all[0] - 1))  # first row of each timestamp
    bounds = np.append(starts, len(ts_all))
    qty_f: dict[str, float] = {}
    close_f: dict[str, float] = {}
    for g0 in range(0, len(starts), chunk_size):
        g1 = min(g0 + chunk_size, len(starts))
        lo, hi = int(bounds[g0]), int(bounds[g1])
        chunk = bars.slice(lo, hi - lo)
        cols = [chunk[k].to_numpy() for k in ("timestamp", "symbol", "open", "high", "low", "close", "volume")]
        ts_out = np.empty(g1 - g0, dtype=np.int64)
        eq_out = np.empty(g1 - g0)
        ex_out = np.empty(g1 - g0, dtype=bool)
        n_fills = len(engine.fills)
        for g in range(g0, g1):
            a, b = int(bounds[g]) - lo, int(bounds[g + 1]) - lo
            group = [make_bar(engine.exchange, cols[1][r], interval, cols[0][r], cols[2][r], cols[3][r], cols[4][r],
                              cols[5][r], cols[6][r]) for r in range(a, b)]
            engine.on_bars(group)
            for f in engine.fills[n_fills:]:
                ledger.apply(f)
                qty_f[f.symbol] = float(ledger.qty[f.symbol])
            n_fills = len(engine.fills)
            cash = float(ledger.cash)
            for r in range(a, b):
                close_f[cols[1][r]] = float(cols[5][r])
            eq = cash
            for s, q in qty_f.items():
                eq += q * close_f[s]
            ts_out[g - g0], eq_out[g - g0] = cols[0][a], eq
            ex_out[g - g0] = any(q != 0.0 for q in qty_f.values())
        sink.add(ts_out, eq_out, ex_out)
        if progress:
            progress(hi - lo)
