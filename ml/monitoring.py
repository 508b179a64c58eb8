"""Is the champion decaying? Live performance from the trades table and feature drift (PSI).

* Performance: the champion's closed round trips (trading.backtest.trades.round_trips over its fills)
  give a hit rate and a per-trade Sharpe over the last ``window_trades`` trades.
* Drift: population stability index of each feature, the rows the stream's live signals scored (the
  stored batch features until it has scored any) vs the champion's training window, with decile bins of
  the training distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from storage import ml as ml_store
from trading.backtest.trades import round_trips


@dataclass(frozen=True)
class DecayThresholds:
    strategy: str = ""  # the slot (trades.strategy) to watch; empty: every slot whose signals name the model
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


def live_trade_pnls(engine: sa.Engine, account: str, strategies: list[str], limit: int) -> list[float]:
    """P&L of the last ``limit`` closed round trips of these slots (each slot's trips are its own)."""
    closed = []
    with engine.connect() as conn:
        for strategy in strategies:
            closed += [t for t in round_trips(ml_store.strategy_fills(conn, account, strategy)) if not t.is_open]
    closed.sort(key=lambda t: t.exit_time)
    return [float(t.pnl) for t in closed[-limit:]]


def watched_slots(engine: sa.Engine, account: str, model_name: str, strategy: str = "") -> list[str]:
    """The stream slots whose trades judge the model: ``strategy`` if given, else what the stream wrote --
    every slot whose live signals name the model (the stream records slot names, e.g. ``ml_champion``,
    not the strategy's class name)."""
    if strategy:
        return [strategy]
    with engine.connect() as conn:
        return ml_store.model_slots(conn, account, model_name)


def decay_reasons(engine: sa.Engine, ml: Any, th: DecayThresholds, account: str | None = None) -> list[str]:
    """Why the champion should be retrained now (empty: it should not)."""
    from deploy.settings import get_settings
    from ml.features import FEATURE_NAMES

    reasons: list[str] = []
    account = account or get_settings().account
    slots = watched_slots(engine, account, ml.model_name, th.strategy)
    perf = trade_performance(live_trade_pnls(engine, account, slots, th.window_trades))
    if perf["trades"] >= th.min_trades:
        if perf["hit_rate"] < th.min_hit_rate:
            reasons.append(f"hit rate {perf['hit_rate']:.2f} < {th.min_hit_rate:.2f} over {perf['trades']} trades")
        if perf["trade_sharpe"] < th.min_trade_sharpe:
            reasons.append(f"per-trade Sharpe {perf['trade_sharpe']:.2f} < {th.min_trade_sharpe:.2f}")
    with engine.connect() as conn:
        window = ml_store.champion_window(conn, ml.model_name)
        if window is None:
            return reasons
        fs = ml.feature_set()

        def values(rows: list[dict]) -> dict[str, np.ndarray]:
            return {n: np.array([r.get(n) if r.get(n) is not None else np.nan for r in rows], dtype=float) for n in FEATURE_NAMES}

        train = values(ml_store.feature_values(conn, fs, ml.exchange, start_ns=window[0], end_ns=window[1]))
        # what the stream scored live; before it has scored anything, the batch features of the same days
        live = ml_store.live_feature_values(conn, account, ml.model_name, th.recent_hours)
        source = "live signals" if live else "stored features"
        recent = values(live or ml_store.feature_values(conn, fs, ml.exchange, recent_hours=th.recent_hours))
    if len(next(iter(recent.values()))) and len(next(iter(train.values()))):
        drift = {n: psi(train[n], recent[n]) for n in FEATURE_NAMES
                 if np.isfinite(train[n]).any() and np.isfinite(recent[n]).any()}
        worst = max(drift, key=drift.get) if drift else None
        if worst is not None and drift[worst] > th.max_psi:
            reasons.append(f"feature drift: PSI of {worst} = {drift[worst]:.3f} > {th.max_psi:.3f} ({source})")
    return reasons
