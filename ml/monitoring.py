"""Is the champion decaying? Live performance from the trades table and feature drift (PSI).

* Performance: the champion's closed round trips (trading.backtest.trades.round_trips over its fills)
  give a hit rate and a per-trade Sharpe over the last ``window_trades`` trades.
* Drift: population stability index of each feature, recent rows vs the champion's training window,
  with decile bins of the training distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa

from trading.backtest.trades import round_trips
from trading.records import Fill, Liquidity, Side


@dataclass(frozen=True)
class DecayThresholds:
    strategy: str = "ml_signal"
    window_trades: int = 50
    min_trades: int = 20
    min_hit_rate: float = 0.45
    min_trade_sharpe: float = 0.0
    max_psi: float = 0.25
    recent_hours: int = 24


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (quantile bins of ``expected``)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e, a = e[np.isfinite(e)], a[np.isfinite(a)]
    if len(e) == 0 or len(a) == 0:
        raise ValueError(f"PSI needs values on both sides (expected {len(e)}, actual {len(a)})")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    pe = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1) / len(e)
    pa = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    pe, pa = np.clip(pe, 1e-6, None), np.clip(pa, 1e-6, None)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def trade_performance(pnls: list[float]) -> dict[str, float]:
    if not pnls:
        return {"trades": 0, "hit_rate": math.nan, "trade_sharpe": math.nan}
    x = np.asarray(pnls, dtype=float)
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return {"trades": len(x), "hit_rate": float((x > 0).mean()), "trade_sharpe": float(x.mean() / sd) if sd > 0 else 0.0}


def live_trade_pnls(engine: sa.Engine, account: str, strategy: str, limit: int) -> list[float]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT fill_id, client_order_id, account, strategy, exchange, symbol, side, price, quantity, fee,
                   fee_currency, liquidity, (extract(epoch FROM ts) * 1000000)::bigint * 1000
            FROM trades WHERE account = :a AND strategy = :s AND mode IN ('paper', 'live')
            ORDER BY ts, fill_id"""), {"a": account, "s": strategy}).fetchall()
    fills = [Fill(r[0], r[1], r[2], r[3], r[4], r[5], Side(r[6]), Decimal(r[7]), Decimal(r[8]), Decimal(r[9]), r[10],
                  Liquidity(r[11]), int(r[12])) for r in rows]
    closed = [t for t in round_trips(fills) if not t.is_open]
    return [float(t.pnl) for t in closed[-limit:]]


def decay_reasons(engine: sa.Engine, ml: Any, th: DecayThresholds, account: str | None = None) -> list[str]:
    """Why the champion should be retrained now (empty: it should not)."""
    from deploy.settings import get_settings
    from ml.features import FEATURE_NAMES

    reasons: list[str] = []
    perf = trade_performance(live_trade_pnls(engine, account or get_settings().account, th.strategy, th.window_trades))
    if perf["trades"] >= th.min_trades:
        if perf["hit_rate"] < th.min_hit_rate:
            reasons.append(f"hit rate {perf['hit_rate']:.2f} < {th.min_hit_rate:.2f} over {perf['trades']} trades")
        if perf["trade_sharpe"] < th.min_trade_sharpe:
            reasons.append(f"per-trade Sharpe {perf['trade_sharpe']:.2f} < {th.min_trade_sharpe:.2f}")
    with engine.connect() as conn:
        window = conn.execute(sa.text("""SELECT (metrics->>'window_start_ns')::bigint, (metrics->>'holdout_start_ns')::bigint
                                         FROM ml_models WHERE model_name = :m AND status = 'champion'"""),
                              {"m": ml.model_name}).first()
        if window is None or window[0] is None:
            return reasons
        fs = ml.feature_set()

        def values(where: str, params: dict) -> dict[str, np.ndarray]:
            rows = conn.execute(sa.text(f"SELECT vals FROM ml_features WHERE feature_set = :fs AND exchange = :e AND {where}"),
                                {"fs": fs, "e": ml.exchange, **params}).scalars().all()
            return {n: np.array([r.get(n) if r.get(n) is not None else np.nan for r in rows], dtype=float) for n in FEATURE_NAMES}

        train = values("ts >= to_timestamp(:a / 1e9) AND ts < to_timestamp(:b / 1e9)", {"a": window[0], "b": window[1]})
        recent = values("ts >= (SELECT max(ts) FROM ml_features WHERE feature_set = :fs AND exchange = :e) - make_interval(hours => :h)",
                        {"h": th.recent_hours})
    if len(next(iter(recent.values()))) and len(next(iter(train.values()))):
        drift = {n: psi(train[n], recent[n]) for n in FEATURE_NAMES
                 if np.isfinite(train[n]).any() and np.isfinite(recent[n]).any()}
        worst = max(drift, key=drift.get) if drift else None
        if worst is not None and drift[worst] > th.max_psi:
            reasons.append(f"feature drift: PSI of {worst} = {drift[worst]:.3f} > {th.max_psi:.3f}")
    return reasons
