"""Stream hot path figures (in process, no broker): decision latency and sustained ticks/s on one core.

    .venv/bin/python benchmarks/bench_stream.py [--minutes 600]

Prints: ticks/s through Trader.on_tick (bars, strategy, sizing, risk, paper fills), the same including
decoding each tick from its wire form (orjson + faust Record), and latency percentiles of all ticks and
of the ticks that closed a bar and produced an order decision (tick in -> order decided, risk included).
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=int, default=600, help="sim minutes of ticks (3 symbols)")
    args = p.parse_args()

    from streaming.app import decode_tick
    from streaming.producers import encode_tick
    from streaming.trader import Trader
    from streaming import config
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    start = sim.config.origin_ns
    ticks = list(sim.events(start, start + args.minutes * 60_000_000_000, kinds=("tick",)))
    wire = [encode_tick(t) for t in ticks]

    def trader() -> Trader:
        return Trader("bench", {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                      limits=RiskLimits.from_dict(config.LIMITS), instruments={i.symbol: i for i in sim.instruments()})

    tr = trader()
    t0 = time.perf_counter()
    for t in ticks:
        tr.on_tick(t)
    dt = time.perf_counter() - t0
    print(f"ticks: {len(ticks)}  orders: {tr.engine.n_orders}  fills: {len(tr.drain().fills)}")
    print(f"hot path in process: {len(ticks) / dt:,.0f} ticks/s")

    tr = trader()
    t0 = time.perf_counter()
    for raw in wire:
        tr.on_tick(decode_tick(raw))
    dt = time.perf_counter() - t0
    print(f"decode + hot path:   {len(wire) / dt:,.0f} ticks/s")

    tr = trader()
    lat, dec = [], []
    perf = time.perf_counter_ns
    for t in ticks:
        n0 = tr.engine.n_orders + sum(tr.engine.rejected.values())
        a = perf()
        tr.on_tick(t)
        d = perf() - a
        lat.append(d)
        if tr.engine.n_orders + sum(tr.engine.rejected.values()) != n0:
            dec.append(d)
        if len(tr.out.events) > 1000:
            tr.drain()
    for name, xs in (("all ticks", lat), ("ticks with an order decision", dec)):
        a = np.asarray(xs) / 1000
        print(f"latency {name} (n={len(a)}): p50 {np.percentile(a, 50):.1f} us  p99 {np.percentile(a, 99):.1f} us"
              f"  max {a.max():.1f} us")


if __name__ == "__main__":
    main()
