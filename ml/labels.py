"""Labels: forward returns over a horizon and triple-barrier labels (Lopez de Prado), per symbol.

Triple barrier on closes: from bar t, the upper barrier is close_t * (1 + k * vol_t), the lower one
close_t * (1 - k * vol_t) (vol_t: 20-bar volatility known at t), the vertical one ``horizon`` bars later.
The label is +1 / -1 for whichever horizontal barrier a later close touches first, 0 if neither is touched
by the vertical barrier. ``tb_t1`` is the time the label is decided: purging needs it.
Rows whose window runs past the data, or whose volatility is still warming up, get no label (null).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from trading import indicators as ind

LABEL_SET_VERSION = "1"


class LabelError(ValueError):
    """Bars that cannot be labelled."""


@dataclass(frozen=True)
class LabelParams:
    horizon: int = 30
    barrier_k: float = 2.0
    vol_window: int = 20

    def label_set_hash(self) -> str:
        blob = json.dumps({"version": LABEL_SET_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def triple_barrier(close: np.ndarray, vol: np.ndarray, horizon: int, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(label in {-1, 0, 1} or NaN, index of the deciding bar or -1) for every bar."""
    n = len(close)
    label = np.full(n, np.nan)
    t1 = np.full(n, -1, dtype=np.int64)
    for i in range(n - horizon):
        if np.isnan(vol[i]):
            continue
        up, lo = close[i] * (1.0 + k * vol[i]), close[i] * (1.0 - k * vol[i])
        path = close[i + 1:i + horizon + 1]
        hit_up = np.flatnonzero(path >= up)
        hit_lo = np.flatnonzero(path <= lo)
        first_up = hit_up[0] if len(hit_up) else horizon
        first_lo = hit_lo[0] if len(hit_lo) else horizon
        if first_up < first_lo:
            label[i], t1[i] = 1.0, i + 1 + first_up
        elif first_lo < first_up:
            label[i], t1[i] = -1.0, i + 1 + first_lo
        else:
            label[i], t1[i] = 0.0, i + horizon
    return label, t1


def compute_labels(bars: pl.DataFrame, params: LabelParams = LabelParams()) -> pl.DataFrame:
    """Columns symbol, ts, fwd_ret_1 (next bar), fwd_ret (over horizon), tb_label, tb_t1 (ns); nulls where
    the future is not in ``bars`` yet."""
    if params.horizon < 1 or params.barrier_k <= 0:
        raise LabelError(f"horizon must be >= 1 and barrier_k > 0, got {params}")
    missing = [c for c in ("symbol", "ts", "close") if c not in bars.columns]
    if missing:
        raise LabelError(f"bars lack columns {missing}")
    frames = []
    for sym in sorted(bars["symbol"].unique().to_list()):
        f = bars.filter(pl.col("symbol") == sym).sort("ts")
        c = f["close"].cast(pl.Float64).to_numpy()
        ts = f["ts"].cast(pl.Int64).to_numpy()
        n = len(c)
        fwd1 = np.full(n, np.nan)
        fwd1[:-1] = c[1:] / c[:-1] - 1.0
        fwd = np.full(n, np.nan)
        h = params.horizon
        if n > h:
            fwd[:-h] = c[h:] / c[:-h] - 1.0
        vol = ind.rolling_volatility(c, params.vol_window) if n else np.array([])
        lab, t1 = triple_barrier(c, vol, h, params.barrier_k)
        t1_ts = np.where(t1 >= 0, ts[np.clip(t1, 0, max(n - 1, 0))], -1)
        frames.append(pl.DataFrame({
            "symbol": [sym] * n, "ts": ts, "fwd_ret_1": fwd1, "fwd_ret": fwd, "tb_label": lab, "tb_t1": t1_ts,
        }))
    out = pl.concat(frames)
    return out.with_columns(
        pl.col("fwd_ret_1").fill_nan(None), pl.col("fwd_ret").fill_nan(None),
        pl.col("tb_label").fill_nan(None).cast(pl.Int8),
        pl.when(pl.col("tb_t1") >= 0).then(pl.col("tb_t1")).otherwise(None).alias("tb_t1"),
    )
