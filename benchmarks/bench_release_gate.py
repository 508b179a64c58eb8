"""Release gate and shadow costs: the gate's two walk-forward runs (candidate and running release on the
same held-out windows) on N days of one symbol's 1m sim bars, and the per-bar cost a candidate in shadow
adds to the stream's Trader (same ticks, with and without a shadow on the slot).

    .venv/bin/python benchmarks/bench_release_gate.py [--days 7] [--minutes 240]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading.backtest.data import load_sim_bars  # noqa: E402
from trading.strategies.releases import ReleaseGateConfig, run_gate  # noqa: E402


def gate(days: int) -> None:
    bars = load_sim_bars("BTC/USDT", days * 1440, interval="1m")
    t0 = time.perf_counter()
    d = run_gate("sma_cross", {"fast": 8, "slow": 60}, {"fast": 5, "slow": 20}, bars, ReleaseGateConfig())
    dt = time.perf_counter() - t0
    print(f"gate: {bars.height} bars ({days} d), {d['windows']} windows x 2 parameter sets: {dt:.2f} s "
          f"({'passed' if d['passed'] else 'refused'}: {d['reason']})")


def shadow(minutes: int) -> None:
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    start = sim.config.origin_ns
    ticks = list(sim.events(start, start + minutes * 60_000_000_000, kinds=("tick",)))
    out = {}
    for with_shadow in (False, True):
        best = float("inf")
        for _ in range(3):  # a fresh Trader per pass, best of three
            t = Trader("bench", {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                       limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()})
            if with_shadow:
                t.set_shadow("t", "sma_cross", {"fast": 10, "slow": 30}, release=2)
            t0 = time.perf_counter()
            for tick in ticks:
                t.on_tick(tick)
            best = min(best, time.perf_counter() - t0)
        out[with_shadow] = best
    bars = minutes * 3
    print(f"trader: {len(ticks)} ticks, {bars} bars: {out[False] * 1e6 / len(ticks):.2f} us/tick without shadow, "
          f"{out[True] * 1e6 / len(ticks):.2f} us/tick with a shadow release; "
          f"+{(out[True] - out[False]) * 1e6 / bars:.1f} us per bar")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--minutes", type=int, default=240)
    a = ap.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}")
    gate(a.days)
    shadow(a.minutes)
