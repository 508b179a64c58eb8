"""Vectorised indicators == incremental indicators (same floats), and both == textbook definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from trading import indicators as ind
from trading.indicators import IndicatorError


def _data(n: int = 3000, seed: int = 7):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    high, low = close + spread, close - spread * rng.uniform(0.2, 1.0, n)
    volume = rng.uniform(0, 10, n)
    volume[5:40] = 0.0  # a stretch without volume
    return close, high, low, volume


def _loop(obj, *cols):
    """Feed rows one at a time; None -> NaN; named tuples -> columns."""
    rows = [obj.update(*vals) for vals in zip(*cols)]
    width = next((len(r) for r in rows if r is not None and isinstance(r, tuple)), None)
    if width is None:
        return np.array([np.nan if r is None else r for r in rows])
    return tuple(np.array([np.nan if r is None else r[i] for r in rows]) for i in range(width))


CASES = [
    ("sma", lambda: ind.SMA(20), lambda c, h, lo, v: ind.sma(c, 20), "c"),
    ("ema", lambda: ind.EMA(12), lambda c, h, lo, v: ind.ema(c, 12), "c"),
    ("rsi", lambda: ind.RSI(14), lambda c, h, lo, v: ind.rsi(c, 14), "c"),
    ("macd", lambda: ind.MACD(12, 26, 9), lambda c, h, lo, v: ind.macd(c, 12, 26, 9), "c"),
    ("bollinger", lambda: ind.Bollinger(20, 2.0), lambda c, h, lo, v: ind.bollinger(c, 20, 2.0), "c"),
    ("zscore", lambda: ind.ZScore(30), lambda c, h, lo, v: ind.zscore(c, 30), "c"),
    ("vol", lambda: ind.RollingVolatility(30, 525600), lambda c, h, lo, v: ind.rolling_volatility(c, 30, 525600), "c"),
    ("atr", lambda: ind.ATR(14), lambda c, h, lo, v: ind.atr(h, lo, c, 14), "hlc"),
    ("vwap", lambda: ind.VWAP(20), lambda c, h, lo, v: ind.vwap(h, lo, c, v, 20), "hlcv"),
    ("donchian", lambda: ind.Donchian(20), lambda c, h, lo, v: ind.donchian(h, lo, 20), "hl"),
]


def _cols(kind, c, h, lo, v):
    return {"c": (c,), "hlc": (h, lo, c), "hlcv": (h, lo, c, v), "hl": (h, lo)}[kind]


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("name,make,vec,kind", CASES, ids=[c[0] for c in CASES])
def test_vectorised_equals_incremental(name, make, vec, kind):
    c, h, lo, v = _data()
    expected = _as_tuple(_loop(make(), *_cols(kind, c, h, lo, v)))
    got = _as_tuple(vec(c, h, lo, v))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=0)  # NaN positions must match too
        assert np.array_equal(g, e, equal_nan=True)  # bit-identical, not merely close
        assert np.isnan(g[0]) and not np.isnan(g[-1])  # warm-up is NaN, then values


@pytest.mark.parametrize("name,make,vec,kind", CASES, ids=[c[0] for c in CASES])
def test_chunked_update_many_continues_state(name, make, vec, kind):
    c, h, lo, v = _data(1000, seed=3)
    cols = _cols(kind, c, h, lo, v)
    whole = _as_tuple(make().update_many(*cols))
    obj = make()
    parts = []
    for a, b in [(0, 7), (7, 8), (8, 300), (300, 301), (301, 1000)]:
        parts.append(_as_tuple(obj.update_many(*(col[a:b] for col in cols))))
    # Then a snapshot/restore into a fresh object continues identically with scalar updates.
    fresh = make()
    fresh.restore(obj.snapshot())
    nxt_a = obj.update(*(col[-1] * 1.001 for col in cols))
    nxt_b = fresh.update(*(col[-1] * 1.001 for col in cols))
    assert nxt_a == nxt_b
    for i, w in enumerate(whole):
        joined = np.concatenate([p[i] for p in parts])
        assert np.array_equal(joined, w, equal_nan=True)


def test_against_textbook_definitions():
    c, h, lo, v = _data(5000)
    s = pd.Series(c)
    np.testing.assert_allclose(ind.sma(c, 20), s.rolling(20).mean(), rtol=1e-10)
    e = ind.ema(c, 12)
    ref = s.ewm(span=12, adjust=False).mean().to_numpy()
    ref[:11] = np.nan
    np.testing.assert_allclose(e, ref, rtol=1e-12)
    mid, up, low, std = ind.bollinger(c, 20, 2.0)
    np.testing.assert_allclose(std, s.rolling(20).std(ddof=0), rtol=1e-6)
    np.testing.assert_allclose(up, s.rolling(20).mean() + 2 * s.rolling(20).std(ddof=0), rtol=1e-9)
    z = ind.zscore(c, 30)
    np.testing.assert_allclose(z, (s - s.rolling(30).mean()) / s.rolling(30).std(ddof=0), rtol=1e-5, atol=1e-8)
    r = s / s.shift(1) - 1
    np.testing.assert_allclose(ind.rolling_volatility(c, 30), r.rolling(30).std(ddof=1), rtol=1e-6)
    up_d, lo_d = ind.donchian(h, lo, 20)
    np.testing.assert_array_equal(up_d, pd.Series(h).rolling(20).max())
    np.testing.assert_array_equal(lo_d, pd.Series(lo).rolling(20).min())
    tp = (h + lo + c) / 3
    ref_vwap = pd.Series(tp * v).rolling(20).sum() / pd.Series(v).rolling(20).sum()
    got = ind.vwap(h, lo, c, v, 20)
    ok = pd.Series(v).rolling(20).sum().to_numpy() > 1e-9
    np.testing.assert_allclose(got[ok], ref_vwap[ok], rtol=1e-9)
    assert np.isnan(got[25])  # window 6..25 had zero volume: no VWAP, not a division artefact
    m, sig, hist = ind.macd(c)
    ref_m = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
    valid = ~np.isnan(m)
    np.testing.assert_allclose(m[valid], ref_m[valid], rtol=1e-9)
    np.testing.assert_allclose(hist[valid], (m - sig)[valid])


def test_rsi_wilder_reference():
    c, *_ = _data(500)
    n = 14
    d = np.diff(c)
    g, lo = np.maximum(d, 0), np.maximum(-d, 0)
    ag, al = g[:n].mean(), lo[:n].mean()
    ref = [100 - 100 / (1 + ag / al)]
    for i in range(n, len(d)):
        ag = (ag * (n - 1) + g[i]) / n
        al = (al * (n - 1) + lo[i]) / n
        ref.append(100 - 100 / (1 + ag / al))
    got = ind.rsi(c, n)
    assert np.isnan(got[:n]).all()
    np.testing.assert_allclose(got[n:], ref, rtol=1e-10)
    assert ind.rsi(np.arange(1.0, 40.0), 14)[-1] == 100.0  # only gains
    assert ind.rsi(np.full(40, 5.0), 14)[-1] == 50.0  # no movement at all


def test_atr_reference():
    c, h, lo, _ = _data(300)
    pc = np.concatenate(([np.nan], c[:-1]))
    tr = np.nanmax(np.vstack([h - lo, np.abs(h - pc), np.abs(lo - pc)]), axis=0)
    ref = [tr[:14].mean()]
    for x in tr[14:]:
        ref.append((ref[-1] * 13 + x) / 14)
    np.testing.assert_allclose(ind.atr(h, lo, c, 14)[13:], ref, rtol=1e-10)


def test_polars_ewm_is_the_scalar_recursion():
    """The fast path relies on polars computing w += a * (x - w) exactly; fail loudly if that changes."""
    x = np.random.default_rng(1).normal(100, 5, 5000)
    for a in (2 / 11, 1 / 14, 0.3):
        w, ref = x[0], [x[0]]
        for v in x[1:]:
            w = w + a * (v - w)
            ref.append(w)
        got = pl.Series(x).ewm_mean(alpha=a, adjust=False).to_numpy()
        assert np.array_equal(got, np.array(ref))


def test_long_series_precision():
    """Shifted running sums keep rolling std accurate over a million bars of a random walk."""
    rng = np.random.default_rng(11)
    c = 30000 + np.cumsum(rng.normal(0, 20, 1_000_000))
    std = ind.bollinger(c, 20)[3]
    tail = c[-1000:]
    ref = pd.Series(tail).rolling(20).std(ddof=0).to_numpy()
    np.testing.assert_allclose(std[-981:], ref[19:], rtol=1e-5)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda: ind.SMA(0), "n must be a positive integer"),
        (lambda: ind.EMA(2.5), "n must be a positive integer"),
        (lambda: ind.SMA(3).update(float("nan")), "value must be finite"),
        (lambda: ind.sma(np.array([1.0, np.inf]), 2), "non-finite value inf at index 1"),
        (lambda: ind.MACD(26, 12), "fast (26) must be shorter than slow (12)"),
        (lambda: ind.RollingVolatility(5).update(-1.0), "price must be positive"),
        (lambda: ind.VWAP(3).update(1, 1, 1, -2), "volume must be >= 0"),
    ],
)
def test_bad_input_is_named(call, needle):
    with pytest.raises(IndicatorError) as e:
        call()
    assert needle in str(e.value)
