"""Backtest speed and memory: SMA crossover on one-minute bars of one symbol, end to end.

End to end = load a Parquet file through the CLI's loader (with validation), indicators, simulation
(PaperVenue + Portfolio), metrics.  Peak memory is measured with tracemalloc (Python + numpy
allocations; polars' Rust allocations are not seen by tracemalloc, so the process's current RSS is printed
before and after each run too -- the resident size now, not the lifetime high-water mark).  The per-bar
(event) path -- the one multi-symbol or risk-checked backtests take -- is timed on --event-bars bars and
reported per bar.

    .venv/bin/python benchmarks/bench_backtest.py [--bars 1000000] [--event-bars 100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading.backtest.data import load_bars  # noqa: E402
from trading.backtest.runner import BacktestConfig, run_backtest  # noqa: E402
from trading.strategies import create_strategy  # noqa: E402


def write_bars(path: Path, n: int, seed: int = 42) -> None:
    """Seeded random walk of one-minute bars, prices rounded to cents."""
    rng = np.random.default_rng(seed)
    close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)
    open_ = np.concatenate(([30_000.0], close[:-1]))
    wiggle = np.round(np.abs(rng.normal(0, 8, (2, n))), 2)
    high = np.maximum(open_, close) + wiggle[0]
    low = np.maximum(np.minimum(open_, close) - wiggle[1], 0.01)
    ts = 1_704_067_200_000 + 60_000 * np.arange(n, dtype=np.int64)  # epoch ms
    pl.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close,
                  "volume": np.round(rng.uniform(1, 50, n), 4)}).write_parquet(path)


def run(path: Path, fee_bps: float = 5.0, fast: bool = True) -> tuple[float, dict, str]:
    t0 = time.perf_counter()
    bars = load_bars(path, "BTC/USDT")
    strategy = create_strategy("sma_cross", {"fast": 50, "slow": 200})
    result = run_backtest(bars, strategy, BacktestConfig(fee_bps=fee_bps, keep_equity=False, fast=fast))
    return time.perf_counter() - t0, result.metrics, result.path


def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--event-bars", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = sorted({100_000, args.bars, args.event_bars})
        paths = {}
        for n in sizes:
            paths[n] = Path(tmp) / f"bars_{n}.parquet"
            write_bars(paths[n], n)
        run(paths[sizes[0]])  # warm imports / caches
        for n in sizes:
            best = min(run(paths[n])[0] for _ in range(3))
            secs, m, path = run(paths[n])
            assert path == "fast", path
            print(f"{n:>9,} bars: end-to-end best of 3 {best:.3f} s ({n / best / 1e6:.2f} M bars/s); "
                  f"n_trades={m['n_trades']} n_fills={m['n_fills']} final_equity={m['final_equity']:.2f} "
                  f"sharpe={m['sharpe']:.2f} max_dd={m['max_drawdown']:.2%}")
        n = args.event_bars
        fast_m = run(paths[n])[1]
        secs, m, path = min((run(paths[n], fast=False) for _ in range(3)), key=lambda r: r[0])
        assert path == "event" and m["n_fills"] == fast_m["n_fills"], (path, m["n_fills"], fast_m["n_fills"])
        print(f"{n:>9,} bars: per-bar (event) path best of 3 {secs:.3f} s = {secs / n * 1e6:.1f} us per bar "
              f"(same {m['n_fills']} fills as the fast path)")
        for n in sizes:
            rss0 = rss_mib()
            tracemalloc.start()
            run(paths[n])
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss1 = rss_mib()
            print(f"{n:>9,} bars: tracemalloc peak {peak / 2**20:.1f} MiB; RSS before {rss0:.0f} MiB, after {rss1:.0f} MiB "
                  f"({rss1 - rss0:+.0f} MiB)")


if __name__ == "__main__":
    main()
