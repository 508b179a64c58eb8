"""A/B shadow mode: do the shadow's decisions on the live bars differ in performance from the live ones?

Two things run in shadow, and both are compared here with the same test:
* a challenger model: the stream (streaming/ml_strategy.py, ``"shadow": true``) scores the ``challenger``
  alias on the same bars as the champion;
* a candidate strategy release (``tradeloop strategy shadow``): the stream runs it beside the live release
  of a slot on the same bars (streaming/trader.py), each bar recording both standing targets.
Either way a slot's ``signals`` hold one live row and one ``shadow = true`` row per (bar, symbol); only the
live decision trades.  Below, "champion" is the live side and "challenger" the shadow side.  Each side's
signal *direction* at a bar is applied to the same forward return of that symbol, giving one paired
observation per (bar, symbol):

    r_champion = target_champion x fwd_return,   r_challenger = target_challenger x fwd_return

and the differences are tested -- not eyeballed -- with a paired t-test and a Wilcoxon signed-rank test
(scipy).  The verdict says "better" only when BOTH reject at ``alpha`` (the t-test assumes roughly
normal differences, which 1-bar returns are not; Wilcoxon does not but tests the median): conservative
on purpose, because a wrong promotion costs more than a late one.  Effect size is Cohen's d_z (mean
difference / standard deviation of the differences).  Below ``min_n`` pairs the answer is
"insufficient data", with the numbers so far.

Forward returns use non-overlapping information only for ``horizon_bars = 1`` (the default); longer
horizons overlap between consecutive bars, which makes the p-values optimistic -- the result says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

BETTER_CHALLENGER, BETTER_CHAMPION = "challenger better", "champion better"
NO_DIFFERENCE, INSUFFICIENT = "no significant difference", "insufficient data"


class ShadowError(ValueError):
    """Input that cannot be compared (different lengths, non-finite returns, bad parameters)."""


@dataclass(frozen=True)
class ShadowResult:
    verdict: str
    n: int
    mean_champion: float
    mean_challenger: float
    mean_diff: float  # challenger - champion, per observation
    effect_size: float  # Cohen's d_z of the differences (nan when they do not vary)
    t_stat: float
    p_value_t: float
    p_value_wilcoxon: float
    alpha: float
    min_n: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(champion: Any, challenger: Any, *, min_n: int = 30, alpha: float = 0.05) -> ShadowResult:
    """Paired comparison of per-observation returns of the two models on the same bars."""
    from scipy import stats

    if not (0 < alpha < 1):
        raise ShadowError(f"alpha must be in (0, 1), got {alpha}")
    if min_n < 3:
        raise ShadowError(f"min_n must be at least 3 (a paired test needs variation), got {min_n}")
    a = np.asarray(champion, dtype=float).ravel()
    b = np.asarray(challenger, dtype=float).ravel()
    if a.shape != b.shape:
        raise ShadowError(f"paired returns need equal lengths: champion {a.size}, challenger {b.size}")
    bad = ~(np.isfinite(a) & np.isfinite(b))
    if bad.any():
        raise ShadowError(f"{int(bad.sum())} non-finite paired return(s), first at index {int(np.flatnonzero(bad)[0])}")
    n = int(a.size)
    d = b - a
    ma, mb = (float(a.mean()), float(b.mean())) if n else (math.nan, math.nan)
    md = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    es = md / sd if n > 1 and sd > 0 else math.nan
    base = dict(n=n, mean_champion=ma, mean_challenger=mb, mean_diff=md, effect_size=es, alpha=alpha, min_n=min_n)
    if n < min_n:
        return ShadowResult(INSUFFICIENT, t_stat=math.nan, p_value_t=math.nan, p_value_wilcoxon=math.nan,
                            note=f"{n} paired observations, need {min_n}", **base)
    if not sd > 0:  # identical (or constantly shifted) decisions: no test has anything to say
        verdict = NO_DIFFERENCE if md == 0 else (BETTER_CHALLENGER if md > 0 else BETTER_CHAMPION)
        return ShadowResult(verdict, t_stat=math.nan, p_value_t=0.0 if md else 1.0, p_value_wilcoxon=0.0 if md else 1.0,
                            note="the differences do not vary", **base)
    t = stats.ttest_rel(b, a)
    nonzero = d[d != 0]
    # Wilcoxon drops zero differences (bars where both models agree); with too few left it cannot reject
    p_w = float(stats.wilcoxon(nonzero).pvalue) if nonzero.size >= 1 else 1.0
    p_t = float(t.pvalue)
    if p_t < alpha and p_w < alpha:
        verdict = BETTER_CHALLENGER if md > 0 else BETTER_CHAMPION
    else:
        verdict = NO_DIFFERENCE
    return ShadowResult(verdict, t_stat=float(t.statistic), p_value_t=p_t, p_value_wilcoxon=p_w,
                        note=f"{nonzero.size} of {n} bars with different decisions", **base)


def paired_returns(signals: pd.DataFrame, closes: pd.DataFrame, interval_ns: int, horizon_bars: int = 1) -> pd.DataFrame:
    """One row per (ts, symbol) where both models signalled and the forward price exists.

    ``signals``: ts (decision time = the close time of the bar scored, ns), symbol, target, shadow (bool).
    ``closes``: symbol, ts (bar *open* time, ns), close.  The entry is the close of the bar scored (open
    time ts - interval), the exit the close ``horizon_bars`` bars later -- the prices a decision made at
    ts could trade at the earliest, as the paper venue fills at the next print.
    """
    if horizon_bars < 1:
        raise ShadowError(f"horizon_bars must be >= 1, got {horizon_bars}")
    for name, df, cols in (("signals", signals, ("ts", "symbol", "target", "shadow")),
                           ("closes", closes, ("symbol", "ts", "close"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ShadowError(f"{name} lacks column(s) {missing}")
    px = {(s, int(t)): float(c) for s, t, c in zip(closes["symbol"], closes["ts"], closes["close"])}
    live = signals[~signals["shadow"].astype(bool)].drop_duplicates(["ts", "symbol"], keep="last")
    shadow = signals[signals["shadow"].astype(bool)].drop_duplicates(["ts", "symbol"], keep="last")
    pairs = live.merge(shadow, on=["ts", "symbol"], suffixes=("_champion", "_challenger"))
    rows = []
    for ts, sym, tc, tx in zip(pairs["ts"], pairs["symbol"], pairs["target_champion"], pairs["target_challenger"]):
        entry = px.get((sym, int(ts) - interval_ns))
        exit_ = px.get((sym, int(ts) - interval_ns + horizon_bars * interval_ns))
        if entry is None or exit_ is None or entry <= 0:
            continue
        fwd = exit_ / entry - 1.0
        rows.append((int(ts), sym, float(tc), float(tx), fwd, float(tc) * fwd, float(tx) * fwd))
    return pd.DataFrame(rows, columns=["ts", "symbol", "target_champion", "target_challenger", "fwd_return",
                                       "r_champion", "r_challenger"])


def load_and_compare(engine: Any, account: str, strategy: str, exchange: str, *, interval: str = "1m",
                     horizon_bars: int = 1, min_n: int = 30, alpha: float = 0.05) -> dict[str, Any]:
    """Compare the live and shadow signals of one stream slot from Postgres (``signals`` and the bars the
    stream stored in ``market_data``): a champion and its challenger model, or a live strategy release and a
    candidate in shadow.  Returns the result with the versions involved (model versions, or ``r<n>``
    release versions)."""
    from storage import ml as ml_store
    from trading.marketdata.timeframes import interval_ns

    step = interval_ns(interval)
    with engine.connect() as conn:
        sig = pd.DataFrame(ml_store.slot_signals(conn, account, strategy),
                           columns=["ts", "symbol", "target", "shadow", "model_version"])
        if sig.empty:
            raise ShadowError(f"no signals of account {account!r}, strategy {strategy!r}")
        bars = pd.DataFrame(ml_store.stream_closes(conn, exchange, interval, sorted(set(sig["symbol"])),
                                                   int(sig["ts"].min()) - step,
                                                   int(sig["ts"].max()) + horizon_bars * step),
                            columns=["symbol", "ts", "close"])
    # microsecond timestamps: round to the bar grid so keys match exactly
    for df in (sig, bars):
        df["ts"] = (df["ts"].astype("int64") + step // 2) // step * step
    pairs = paired_returns(sig, bars, step, horizon_bars)
    res = compare(pairs["r_champion"].to_numpy(), pairs["r_challenger"].to_numpy(), min_n=min_n, alpha=alpha)
    out = res.as_dict()
    out.update(account=account, strategy=strategy, horizon_bars=horizon_bars,
               champion_versions=sorted(set(sig.loc[~sig["shadow"], "model_version"])),
               challenger_versions=sorted(set(sig.loc[sig["shadow"], "model_version"])),
               test="paired t-test and Wilcoxon signed-rank; 'better' needs both below alpha")
    if horizon_bars > 1:
        out["note"] = (out["note"] + "; " if out["note"] else "") + "overlapping forward returns: p-values optimistic"
    return out
