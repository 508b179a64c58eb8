"""Deliberate corruption of bars, to rehearse the data-quality path (raw checks fail, the clean layer
quarantines). Deterministic for a seed; used by the `ohlcv` asset's drill option and by tests."""

from __future__ import annotations

import numpy as np
import polars as pl

# each fault: what it does to a row, and the quarantine reason the clean layer must give it
FAULTS = ("nan_close", "negative_volume", "high_below_low", "duplicate_ts", "unconfirmed_spike")


def corrupt_bars(frame: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """Return `frame` (sorted by ts) with `n` rows corrupted, cycling through FAULTS."""
    if n <= 0 or frame.height < 3:
        return frame
    rng = np.random.default_rng(seed)
    rows = frame.sort("ts").to_dicts()
    # interior rows only, far enough apart that faults do not mask each other
    picks = sorted(rng.choice(np.arange(1, len(rows) - 1), size=min(n, len(rows) - 2), replace=False))
    extra = []
    for i, idx in enumerate(picks):
        row = rows[idx]
        fault = FAULTS[i % len(FAULTS)]
        if fault == "nan_close":
            row["close"] = float("nan")
        elif fault == "negative_volume":
            row["volume"] = -abs(row["volume"]) - 1.0
        elif fault == "high_below_low":
            row["high"], row["low"] = row["low"] * 0.99, row["high"] * 1.01
        elif fault == "duplicate_ts":
            twin = dict(rows[idx])
            twin["close"] = twin["close"] * 1.001  # same key, different values
            twin["high"] = max(twin["high"], twin["close"])
            extra.append(twin)
        elif fault == "unconfirmed_spike":
            spike = row["close"] * 1.5  # a 50 % move on ordinary volume
            row["close"] = spike
            row["high"] = max(row["high"], spike)
    return pl.DataFrame(rows + extra, schema=frame.schema).sort("ts")
