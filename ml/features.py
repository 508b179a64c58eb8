"""Point-in-time features from bars: the batch computation (training) and ``OnlineFeatures`` (the stream).

Both give the same floats for the same bars from the same start, because they share every formula:
technical indicators come from ``trading.indicators`` (whose vectorised functions and incremental
objects agree bit for bit), window statistics (cross-asset correlation, relative strength) and the
regime posterior are computed by the same scalar helpers on the same window arrays.

Point in time: the feature of a bar at ``ts`` uses that bar and earlier data only.

* Own features (returns, RSI, MACD, z-scores, volatility, ATR, VWAP, Donchian, volume): bars up to ``ts``.
* Cross-asset features use the other symbols' returns up to the *previous* interval (``ts - interval``):
  a symbol's features never wait for the others' bar of the same minute, and never depend on the order
  in which the bars of one minute arrive in the stream.
* Market regime: per symbol, a 2-component Gaussian mixture on (1-bar return, 20-bar volatility),
  refitted at the first bar of every ``regime_refit`` block on the ``regime_window`` rows *before* that
  bar; the feature is the posterior probability of the high-volatility component.

Bars only: the sim and the clean store hold bars, not ticks, so there are no microstructure features yet.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from trading import indicators as ind
from trading.marketdata.timeframes import interval_ns

FEATURE_SET_VERSION = "1"


class FeatureError(ValueError):
    """Bars that cannot give features (missing columns, unsorted, non-positive prices...)."""


@dataclass(frozen=True)
class FeatureParams:
    """The one definition of the feature parameters (and their defaults). A model is trained with one set and
    logged with it (ml/training.py); the stream builds its features from the served model's set."""

    interval: str = "1m"
    cross_window: int = 30
    regime_window: int = 720
    regime_min_fit: int = 240
    regime_refit: str = "6h"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FeatureParams":
        """Parameters logged with a model (``as_dict``); unknown or missing names are an error, not a guess."""
        names = set(cls.__dataclass_fields__)
        if set(values) != names:
            raise FeatureError(f"feature parameters {sorted(values)} are not exactly {sorted(names)}")
        return cls(**values)


OWN_FEATURES = [
    "ret_1", "ret_5", "ret_15", "range_norm", "rsi_14", "macd_hist_norm", "zscore_20", "vol_20", "vol_60",
    "atr_14_norm", "vwap_dev_20", "donchian_pos_20", "volume_z_20",
]
CROSS_FEATURES = ["xcorr", "rel_strength"]
REGIME_FEATURES = ["regime_p_high"]
FEATURE_NAMES = OWN_FEATURES + CROSS_FEATURES + REGIME_FEATURES
BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")


def feature_set_hash(params: FeatureParams, symbols: list[str]) -> str:
    """Identity of a feature set: version, parameters, names and the symbol universe (cross-asset)."""
    blob = json.dumps({"version": FEATURE_SET_VERSION, "params": params.as_dict(), "names": FEATURE_NAMES,
                       "symbols": sorted(symbols)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- scalar helpers shared by both paths (same function, same inputs -> same floats) ----------------

def _window_corr(x: np.ndarray, y: np.ndarray) -> float:
    if np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    return 0.0 if den <= 1e-300 else float(np.dot(dx, dy)) / den


def _window_rel(x: np.ndarray, y: np.ndarray) -> float:
    if np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    return float(x.sum()) - float(y.sum())


def _others_mean(rets: list[float]) -> float:
    """Mean of the other symbols' returns at one timestamp, summed in symbol order."""
    s = 0.0
    for r in rets:
        s += r
    return s / len(rets)


@dataclass(frozen=True)
class RegimeFit:
    mu: tuple[tuple[float, float], tuple[float, float]]  # standardised means (low-vol, high-vol)
    var: tuple[tuple[float, float], tuple[float, float]]
    w: tuple[float, float]
    center: tuple[float, float]
    scale: tuple[float, float]


def fit_regime(rows: np.ndarray) -> RegimeFit | None:
    """GaussianMixture(2, diag) on standardised (ret_1, vol_20) rows; None when they cannot be fitted."""
    from sklearn.mixture import GaussianMixture

    center = rows.mean(axis=0)
    scale = rows.std(axis=0)
    if not (scale > 0).all():
        return None
    z = (rows - center) / scale
    gm = GaussianMixture(2, covariance_type="diag", random_state=0, init_params="random_from_data").fit(z)
    hi = int(np.argmax(gm.means_[:, 1]))  # the component with the higher volatility is "high"
    order = (1 - hi, hi)
    return RegimeFit(
        mu=tuple((float(gm.means_[k, 0]), float(gm.means_[k, 1])) for k in order),  # type: ignore[arg-type]
        var=tuple((float(gm.covariances_[k, 0]), float(gm.covariances_[k, 1])) for k in order),  # type: ignore[arg-type]
        w=(float(gm.weights_[order[0]]), float(gm.weights_[order[1]])),
        center=(float(center[0]), float(center[1])),
        scale=(float(scale[0]), float(scale[1])),
    )


def regime_posterior(fit: RegimeFit | None, ret: float, vol: float) -> float:
    if fit is None or math.isnan(ret) or math.isnan(vol):
        return math.nan
    x = ((ret - fit.center[0]) / fit.scale[0], (vol - fit.center[1]) / fit.scale[1])
    logp = []
    for k in range(2):
        lp = math.log(fit.w[k])
        for d in range(2):
            v = fit.var[k][d]
            lp -= 0.5 * (math.log(2.0 * math.pi * v) + (x[d] - fit.mu[k][d]) ** 2 / v)
        logp.append(lp)
    m = max(logp)
    e0, e1 = math.exp(logp[0] - m), math.exp(logp[1] - m)
    return e1 / (e0 + e1)


# ---- batch ------------------------------------------------------------------------------------

def _check_bars(bars: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars lack columns {missing}; need {list(BAR_COLUMNS)}")
    if bars.height == 0:
        raise FeatureError("no bars to compute features from")
    bars = bars.select(
        pl.col("symbol").cast(pl.Utf8), pl.col("ts").cast(pl.Int64),
        *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")],
    )
    if bars.select(pl.col("close").min()).item() <= 0:
        raise FeatureError("bars hold a non-positive close; clean them first (market_data_clean)")
    dup = bars.select(pl.struct("symbol", "ts").is_duplicated().sum()).item()
    if dup:
        raise FeatureError(f"bars hold {dup} duplicate (symbol, ts) rows")
    return bars.sort("symbol", "ts")


def _own_features(f: pl.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo, c, v = (f[k].to_numpy().astype(np.float64) for k in ("open", "high", "low", "close", "volume"))
    n = len(c)

    def ret(k: int) -> np.ndarray:
        out = np.full(n, np.nan)
        out[k:] = c[k:] / c[:-k] - 1.0
        return out

    _, _, hist = ind.macd(c)
    up, low = ind.donchian(h, lo, 20)
    width = up - low
    with np.errstate(divide="ignore", invalid="ignore"):
        don = np.where(width > 0, (c - low) / width, 0.5)
    don = np.where(np.isnan(width), np.nan, don)
    return {
        "ret_1": ret(1), "ret_5": ret(5), "ret_15": ret(15),
        "range_norm": (h - lo) / c,
        "rsi_14": ind.rsi(c, 14),
        "macd_hist_norm": hist / c,
        "zscore_20": ind.zscore(c, 20),
        "vol_20": ind.rolling_volatility(c, 20),
        "vol_60": ind.rolling_volatility(c, 60),
        "atr_14_norm": ind.atr(h, lo, c, 14) / c,
        "vwap_dev_20": c / ind.vwap(h, lo, c, v, 20) - 1.0,
        "donchian_pos_20": don,
        "volume_z_20": ind.zscore(v, 20),
    }


def compute_features(bars: pl.DataFrame, params: FeatureParams = FeatureParams()) -> pl.DataFrame:
    """Features of every bar: columns symbol, ts, *FEATURE_NAMES (NaN while a window warms up)."""
    bars = _check_bars(bars)
    iv = interval_ns(params.interval)
    symbols = sorted(bars["symbol"].unique().to_list())
    per: dict[str, pl.DataFrame] = {s: bars.filter(pl.col("symbol") == s) for s in symbols}
    own = {s: _own_features(per[s]) for s in symbols}

    # Returns on a regular timestamp grid: windows are defined by time, so a gap is a NaN, not a shift.
    t0 = int(bars["ts"].min())
    t_end = int(bars["ts"].max())
    grid_n = (t_end - t0) // iv + 1
    R = np.full((grid_n, len(symbols)), np.nan)
    for j, s in enumerate(symbols):
        ts = per[s]["ts"].to_numpy()
        if ((ts - t0) % iv).any():
            raise FeatureError(f"{s} has timestamps off the {params.interval} grid")
        R[(ts - t0) // iv, j] = own[s]["ret_1"]
    W = params.cross_window
    refit_ns = interval_ns(params.regime_refit)
    frames = []
    for j, s in enumerate(symbols):
        ts = per[s]["ts"].to_numpy()
        g = (ts - t0) // iv
        others = [k for k in range(len(symbols)) if k != j]
        if others:
            m = np.array([_others_mean([R[i, k] for k in others]) for i in range(grid_n)])
        xcorr = np.full(len(ts), np.nan)
        rel = np.full(len(ts), np.nan)
        if others:
            for i, gi in enumerate(g):
                if gi >= W:  # window = the W grid slots ending at the previous interval
                    x = np.ascontiguousarray(R[gi - W:gi, j])
                    y = np.ascontiguousarray(m[gi - W:gi])
                    xcorr[i] = _window_corr(x, y)
                    rel[i] = _window_rel(x, y)
        regime = _batch_regime(ts, own[s]["ret_1"], own[s]["vol_20"], params, refit_ns)
        cols = {"symbol": [s] * len(ts), "ts": ts, **own[s], "xcorr": xcorr, "rel_strength": rel,
                "regime_p_high": regime}
        frames.append(pl.DataFrame(cols))
    return pl.concat(frames).select("symbol", "ts", *FEATURE_NAMES)


def _batch_regime(ts: np.ndarray, ret: np.ndarray, vol: np.ndarray, params: FeatureParams, refit_ns: int) -> np.ndarray:
    out = np.full(len(ts), np.nan)
    fit: RegimeFit | None = None
    block = None
    for i in range(len(ts)):
        b = int(ts[i]) // refit_ns
        if b != block:
            block = b
            fit = _fit_from(ret[max(0, i - params.regime_window):i], vol[max(0, i - params.regime_window):i], params)
        out[i] = regime_posterior(fit, float(ret[i]), float(vol[i]))
    return out


def _fit_from(ret: np.ndarray, vol: np.ndarray, params: FeatureParams) -> RegimeFit | None:
    ok = ~(np.isnan(ret) | np.isnan(vol))
    if int(ok.sum()) < params.regime_min_fit:
        return None
    return fit_regime(np.column_stack([ret[ok], vol[ok]]))


# ---- online -----------------------------------------------------------------------------------

class _SymbolState:
    def __init__(self, params: FeatureParams) -> None:
        self.closes: deque[float] = deque(maxlen=16)
        self.macd = ind.MACD()
        self.rsi = ind.RSI(14)
        self.z = ind.ZScore(20)
        self.vol20 = ind.RollingVolatility(20)
        self.vol60 = ind.RollingVolatility(60)
        self.atr = ind.ATR(14)
        self.vwap = ind.VWAP(20)
        self.don = ind.Donchian(20)
        self.vz = ind.ZScore(20)
        self.rets: deque[float] = deque(maxlen=params.regime_window)
        self.vols: deque[float] = deque(maxlen=params.regime_window)
        self.block: int | None = None
        self.fit: RegimeFit | None = None
        self.last_ts: int | None = None


class OnlineFeatures:
    """Incremental features for the stream: ``update(bar)`` returns the feature dict of ``bar.symbol`` at
    ``bar``'s time (same floats as ``compute_features`` over the same bars from the same start), or None
    while any window is still warming up.

    ``symbols`` is the universe the cross-asset features average over; bars of one interval must arrive
    before any bar of the next (the stream receives bars as they close, so they do).
    """

    def __init__(self, symbols: list[str], params: FeatureParams = FeatureParams()) -> None:
        if not symbols:
            raise FeatureError("OnlineFeatures needs at least one symbol")
        self.params = params
        self.symbols = sorted(symbols)
        self._iv = interval_ns(params.interval)
        self._refit_ns = interval_ns(params.regime_refit)
        self._st = {s: _SymbolState(params) for s in self.symbols}
        # returns by grid timestamp, per symbol, kept long enough for the cross-asset window
        self._rets: dict[str, dict[int, float]] = {s: {} for s in self.symbols}

    @property
    def feature_names(self) -> list[str]:
        return list(FEATURE_NAMES)

    def update(self, bar: Any) -> dict[str, float] | None:
        s = bar.symbol
        st = self._st.get(s)
        if st is None:
            raise FeatureError(f"symbol {s!r} is not in the feature universe {self.symbols}")
        ts = int(bar.exchange_ts)
        if st.last_ts is not None and ts <= st.last_ts:
            raise FeatureError(f"{s} bar at {ts} is not after the previous one at {st.last_ts}")
        st.last_ts = ts
        h, lo, c, v = (float(bar.high), float(bar.low), float(bar.close), float(bar.volume))
        if c <= 0:
            raise FeatureError(f"{s} bar at {ts} has a non-positive close {c}")
        prev = list(st.closes)
        st.closes.append(c)

        def ret(k: int) -> float:
            return c / prev[-k] - 1.0 if len(prev) >= k else math.nan

        f: dict[str, float] = {"ret_1": ret(1), "ret_5": ret(5), "ret_15": ret(15), "range_norm": (h - lo) / c}
        f["rsi_14"] = _nan(st.rsi.update(c))
        m = st.macd.update(c)
        f["macd_hist_norm"] = math.nan if m is None else m.hist / c
        f["zscore_20"] = _nan(st.z.update(c))
        f["vol_20"] = _nan(st.vol20.update(c))
        f["vol_60"] = _nan(st.vol60.update(c))
        a = st.atr.update(h, lo, c)
        f["atr_14_norm"] = math.nan if a is None else a / c
        vw = st.vwap.update(h, lo, c, v)
        f["vwap_dev_20"] = math.nan if vw is None else c / vw - 1.0
        d = st.don.update(h, lo)
        if d is None:
            f["donchian_pos_20"] = math.nan
        else:
            width = d.upper - d.lower
            f["donchian_pos_20"] = (c - d.lower) / width if width > 0 else 0.5
        f["volume_z_20"] = _nan(st.vz.update(v))

        # cross-asset over the W grid slots before ts
        rets = self._rets[s]
        rets[ts] = f["ret_1"]
        W = self.params.cross_window
        others = [o_ for o_ in self.symbols if o_ != s]
        if others:
            slots = [ts - k * self._iv for k in range(W, 0, -1)]
            x = np.array([rets.get(t, math.nan) for t in slots])
            y = np.array([_others_mean([self._rets[o_].get(t, math.nan) for o_ in others]) for t in slots])
            f["xcorr"] = _window_corr(x, y)
            f["rel_strength"] = _window_rel(x, y)
        else:
            f["xcorr"] = f["rel_strength"] = math.nan
        horizon = ts - (W + 1) * self._iv
        for t in [t for t in rets if t < horizon]:
            del rets[t]

        block = ts // self._refit_ns
        if block != st.block:
            st.block = block
            st.fit = _fit_from(np.array(st.rets), np.array(st.vols), self.params)
        f["regime_p_high"] = regime_posterior(st.fit, f["ret_1"], f["vol_20"])
        st.rets.append(f["ret_1"])
        st.vols.append(f["vol_20"])

        out = {k: f[k] for k in FEATURE_NAMES}
        return None if any(math.isnan(x) for x in out.values()) else out


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
