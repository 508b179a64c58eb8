"""Walk-forward evaluation: rolling (or anchored) train/test windows over a bar frame.

``walk_forward_windows`` yields the windows (row ranges); ``walk_forward`` builds a strategy from
each train window (fit a model, run an optimiser...) and backtests it on the following test window.
The test run first replays the ``warmup_bars`` bars before the window so indicators are warm; their
decisions are held back and the latest one takes effect at the window's first bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import polars as pl

from trading.backtest.data import DataError
from trading.backtest.runner import BacktestConfig, BacktestResult, run_backtest
from trading.strategies.base import Strategy


@dataclass(frozen=True)
class Window:
    index: int
    train_start: int  # row indices, half-open [start, end)
    train_end: int
    test_start: int
    test_end: int


def walk_forward_windows(n_rows: int, train: int, test: int, step: int | None = None, anchored: bool = False) -> Iterator[Window]:
    """Windows of ``train`` rows followed by ``test`` rows, moved by ``step`` (default ``test``).
    ``anchored`` keeps every train window starting at row 0 (expanding)."""
    for name, v in (("train", train), ("test", test), ("step", test if step is None else step)):
        if v < 1:
            raise DataError(f"walk-forward {name} must be >= 1 bar, got {v}")
    step = test if step is None else step
    k, start = 0, 0
    while start + train + test <= n_rows:
        yield Window(k, 0 if anchored else start, start + train, start + train, start + train + test)
        k += 1
        start += step


@dataclass
class WindowResult:
    window: Window
    strategy: Strategy
    result: BacktestResult


def walk_forward(
    bars: pl.DataFrame,
    make_strategy: Callable[[pl.DataFrame], Strategy],
    train: int,
    test: int,
    step: int | None = None,
    anchored: bool = False,
    config: BacktestConfig | None = None,
) -> list[WindowResult]:
    """Backtest ``make_strategy(train_frame)`` on each test window (single-symbol frames: rows = bars)."""
    base = config or BacktestConfig()
    out = []
    ts = bars["timestamp"]
    for w in walk_forward_windows(bars.height, train, test, step, anchored):
        strat = make_strategy(bars.slice(w.train_start, w.train_end - w.train_start))
        warm_start = max(0, w.test_start - strat.warmup_bars)
        cfg = BacktestConfig(**{**base.__dict__, "trade_from_ts": int(ts[w.test_start])})
        res = run_backtest(bars.slice(warm_start, w.test_end - warm_start), strat, cfg)
        out.append(WindowResult(w, strat, res))
    return out
