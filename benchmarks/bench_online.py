"""Online learning cost per bar (ml/online.py): labels + River learn + score, beside the feature update the
stream already pays, and a checkpoint snapshot; on seeded sim bars of three symbols.

    .venv/bin/python benchmarks/bench_online.py [--bars 3000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.features import FeatureParams, OnlineFeatures  # noqa: E402
from ml.labels import LabelParams  # noqa: E402
from ml.online import OnlineModel  # noqa: E402
from trading.marketdata.sim import SimConfig, SimVenue  # noqa: E402
from trading.records import Bar  # noqa: E402


def bars(n: int) -> list[Bar]:
    sim = SimVenue(SimConfig(seed=7))
    frame = sim.generate_bars(sim.config.origin_ns, n)
    rows = sorted(frame.iter_rows(named=True), key=lambda r: (r["ts"], r["symbol"]))
    return [Bar(r["exchange"], r["symbol"], "1m", r["ts"], r["ts"],
                *[Decimal(repr(float(r[k]))) for k in ("open", "high", "low", "close", "volume")]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=3000, help="one-minute bars per symbol")
    args = ap.parse_args()
    recs = bars(args.bars)
    fp = FeatureParams()
    feats = OnlineFeatures(sorted({b.symbol for b in recs}), fp)
    t = time.perf_counter()
    rows = [feats.update(b) for b in recs]
    t_feat = time.perf_counter() - t
    model = OnlineModel("bench", fp, LabelParams(), min_learned=1)
    learn_s = score_s = 0.0
    scored = 0
    for b, row in zip(recs, rows):
        t = time.perf_counter()
        model.observe(b.symbol, b.exchange_ts, float(b.close), row)
        learn_s += time.perf_counter() - t
        if row is not None:
            t = time.perf_counter()
            if model.score(row) is not None:
                scored += 1
            score_s += time.perf_counter() - t
    t = time.perf_counter()
    snap = model.snapshot()
    t_snap = time.perf_counter() - t
    n = len(recs)
    print(f"bars {n} ({args.bars} per symbol), learned {model.state.n_learned}, scored {scored}; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"features (already paid by the stream) {t_feat / n * 1e6:.0f} us/bar")
    print(f"labels + learn {learn_s / n * 1e6:.0f} us/bar; score {score_s / max(scored, 1) * 1e6:.0f} us/scored bar; "
          f"learn+score {(learn_s + score_s) / n * 1e6:.0f} us/bar")
    print(f"checkpoint snapshot {t_snap * 1e3:.2f} ms, {len(snap) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
