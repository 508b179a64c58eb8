"""Training time on one week of one-minute sim bars for 3 symbols (features, labels, CV, final fit, MLflow).

Run: .venv/bin/python benchmarks/bench_training.py [days] [ag_time_limit_s]
"""

from __future__ import annotations

import sys
import tempfile
import time

from ml.features import FeatureParams, compute_features, feature_set_hash
from ml.labels import LabelParams, compute_labels
from ml.training import TrainConfig, build_dataset, train_and_register
from trading.marketdata.sim import SimConfig, SimVenue


def main() -> None:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    ag = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    venue = SimVenue(SimConfig(seed=7))
    t = time.perf_counter()
    bars = venue.generate_bars(venue.config.origin_ns, days * 1440)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    params = FeatureParams()
    feats = compute_features(bars, params)
    t_feat = time.perf_counter() - t
    t = time.perf_counter()
    labels = compute_labels(bars, LabelParams())
    t_lab = time.perf_counter() - t
    ds = build_dataset(feats, labels)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        r = train_and_register(ds, TrainConfig(ag_time_limit=ag), f"sqlite:///{tmp}/mlflow.db", "bench",
                               feature_set_hash(params, venue.symbols), LabelParams().label_set_hash(), params)
        t_train = time.perf_counter() - t
    print(f"bars: {bars.height} ({days} days x 3 symbols), training rows: {len(ds.y)}")
    print(f"generate {t_gen:.1f} s | features {t_feat:.1f} s | labels {t_lab:.1f} s | "
          f"train+log+register {t_train:.1f} s (AutoGluon time_limit {ag:.0f} s per fit, 3 folds + final) | chosen {r.kind}")
    print(f"total {t_gen + t_feat + t_lab + t_train:.1f} s")


if __name__ == "__main__":
    main()
