"""The optimiser's daily target weights (table target_weights): written by the Dagster asset, read by the
asset (yesterday's weights are today's starting point) and by the stream's target_rebalance slot.

Semantic of ``as_of``: the asset's partition D computes weights from the daily closes up to and
including day D (storage.market_data.daily_closes), so they exist only once D is over (the schedule runs
at 00:30 for the day before).  The weights valid for trading on day D are therefore the latest ones
computed for a day strictly before D: ``as_of < D``.  Reading ``as_of <= D`` would trade D's weights
during D itself -- in a replay or a backfill, weights computed from closes that had not happened yet.
The asset's own "current weights" for partition D are the same rows: what was held going into D.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Sequence

import sqlalchemy as sa


@dataclass(frozen=True)
class WeightRow:
    as_of: date
    symbol: str
    weight: Decimal
    model: str
    solver_status: str


def weights_for_trading_day(conn: sa.Connection, portfolio: str, day: date) -> list[WeightRow]:
    """The rows of the latest ``as_of`` strictly before ``day`` (see the module doc), by symbol; empty when
    the portfolio has none.  The primary key (portfolio, as_of, symbol) serves both the max and the rows."""
    rows = conn.execute(sa.text("""
        SELECT as_of, symbol, weight, model, solver_status
        FROM target_weights
        WHERE portfolio = :p AND as_of = (SELECT max(as_of) FROM target_weights WHERE portfolio = :p AND as_of < :d)
        ORDER BY symbol
    """), {"p": portfolio, "d": day}).all()
    return [WeightRow(*r) for r in rows]


def weights_as_of(conn: sa.Connection, portfolio: str, as_of: date) -> dict[str, float]:
    """The stored weights of exactly ``as_of`` (what one materialisation wrote)."""
    rows = conn.execute(sa.text("SELECT symbol, weight FROM target_weights WHERE portfolio = :p AND as_of = :d"),
                        {"p": portfolio, "d": as_of}).all()
    return {s: float(w) for s, w in rows}


def replace_weights(conn: sa.Connection, portfolio: str, as_of: date, symbols: Sequence[str], weights: Sequence[float],
                    *, model: str, estimator: str, solver: str, solver_status: str, expected_return: float,
                    expected_vol: float, solve_time_s: float, inputs: dict[str, Any], run_id: str | None) -> None:
    """Replace the (portfolio, as_of) rows in the caller's transaction: a re-run changes nothing else."""
    conn.execute(sa.text("DELETE FROM target_weights WHERE portfolio = :p AND as_of = :d"), {"p": portfolio, "d": as_of})
    conn.execute(sa.text("""
        INSERT INTO target_weights (portfolio, as_of, symbol, weight, model, estimator, solver, solver_status,
                                    expected_return, expected_vol, solve_time_s, inputs, run_id)
        VALUES (:p, :d, :symbol, :weight, :model, :estimator, :solver, :status, :er, :ev, :t,
                CAST(:inputs AS jsonb), :run_id)
    """), [{"p": portfolio, "d": as_of, "symbol": s, "weight": Decimal(repr(float(w))), "model": model,
            "estimator": estimator, "solver": solver, "status": solver_status,
            "er": None if math.isnan(expected_return) else expected_return, "ev": expected_vol,
            "t": solve_time_s, "inputs": json.dumps(inputs, default=str), "run_id": run_id}
           for s, w in zip(symbols, weights)])
