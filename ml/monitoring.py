"""Is the champion decaying? Live performance from the trades table and feature drift (PSI).

* Performance: the champion's closed round trips (trading.backtest.trades.round_trips over its fills)
  give a hit rate and a per-trade Sharpe over the last ``window_trades`` trades.
* Drift: population stability index of each feature, the rows the stream's live signals scored with the
  champion's version (at least ``min_drift_rows``; until then drift is not judged) vs the champion's
  training window, with decile bins of the training distribution.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
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
    min_drift_rows: int = 240  # live rows (bars x symbols) before PSI is judged: fewer are mostly noise


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
        champion = ml_store.champion_window(conn, ml.model_name)
        if champion is None:
            return reasons
        version, start, holdout = champion
        # Only what the stream scored with this champion: the stored batch features of recent days are the
        # champion's own training and holdout data, and a volatility feature of one day against two weeks
        # "drifts" in any market whose volatility clusters -- a retrain an hour after every promotion.
        live = ml_store.live_feature_values(conn, account, ml.model_name, th.recent_hours, version=version)
        if len(live) < th.min_drift_rows:
            return reasons
        fs = ml.feature_set()

        def values(rows: list[dict]) -> dict[str, np.ndarray]:
            return {n: np.array([r.get(n) if r.get(n) is not None else np.nan for r in rows], dtype=float) for n in FEATURE_NAMES}

        train = values(ml_store.feature_values(conn, fs, ml.exchange, start_ns=start, end_ns=holdout))
        recent = values(live)
    if len(next(iter(train.values()))):
        drift = {n: psi(train[n], recent[n]) for n in FEATURE_NAMES
                 if np.isfinite(train[n]).any() and np.isfinite(recent[n]).any()}
        worst = max(drift, key=drift.get) if drift else None
        if worst is not None and drift[worst] > th.max_psi:
            reasons.append(f"feature drift: PSI of {worst} = {drift[worst]:.3f} > {th.max_psi:.3f} "
                           f"(live signals of v{version}, {len(live)} rows)")
    return reasons


def retrain_would_repeat(engine: sa.Engine, ml: Any, exclude_kind: str = "") -> str | None:
    """Why a retrain now would train on the days the newest model was trained on (None: it would not).
    Decay seen before a new day of features exists is not fixed by fitting the same rows again, and a
    sensor that ticks hourly would otherwise retrain (and gate) hourly."""
    with engine.connect() as conn:
        end = ml_store.features_end_ns(conn, ml.feature_set(), ml.exchange)
        newest = ml_store.newest_training_end(conn, ml.model_name, exclude_kind)
    if end is None or newest is None or end > newest[1]:
        return None
    day = datetime.fromtimestamp((newest[1] - 1) // 1_000_000_000, tz=timezone.utc).date()  # the end is exclusive
    return f"v{newest[0]} was trained on the features up to {day}; none newer are stored yet"
