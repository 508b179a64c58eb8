"""Whole-platform simulation speed: `tradeloop simulate` over N days x the symbols, end to end.

End to end = a fresh database and MLflow store, the warm-up history, then every simulated day: the stream's
Trader on the day's 1-minute bars (four prints a bar) and the platform's daily jobs and decay sensor at their
scheduled times (orchestration/simulation/runner.py), tear sheets at the end.  Prints the wall time, the
time by step, the machine's load, and checks that a second run with the same seed gives the same timeline
(with --twice).

PostgreSQL: DATABASE_URL's server, else the embedded one if it is up, else a temporary one.

    .venv/bin/python benchmarks/bench_simulate.py [--days 30] [--symbols BTC/USDT,ETH/USDT,SOL/USDT] [--twice]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--symbols", default="BTC/USDT,ETH/USDT,SOL/USDT")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="", help="first simulated day; default: --days + 1 days ago")
    ap.add_argument("--twice", action="store_true", help="run again with the same seed and compare timelines")
    args = ap.parse_args()
    os.environ.setdefault("TRADELOOP_HOME", tempfile.mkdtemp(prefix="bench-simulate-"))

    from orchestration.simulation import SimulationSpec, run_simulation

    today = datetime.now(timezone.utc).date()
    start = datetime.fromisoformat(args.start).date() if args.start else today - timedelta(days=args.days + 1)
    spec = SimulationSpec(start=start, days=args.days, seed=args.seed, symbols=tuple(args.symbols.split(",")))
    runs = []
    for k in range(2 if args.twice else 1):
        load = os.getloadavg()
        began = time.monotonic()
        out = Path(os.environ["TRADELOOP_HOME"]) / f"run{k}"
        result = run_simulation(spec, out_dir=out, show_timeline=False)
        wall = time.monotonic() - began
        runs.append(result.timeline.lines())
        print(f"run {k + 1}: {args.days} days x {len(spec.symbols)} symbols in {wall:.0f} s "
              f"({wall / 60:.1f} min); load before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
              f"{len(result.timeline.events)} timeline events, tear sheet {result.tear_sheet}")
    if args.twice:
        print("same timeline twice:", runs[0] == runs[1])
    print(f"cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
