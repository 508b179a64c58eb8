"""strategy_performance: the daily record of each strategy of each account (trading/performance.py computes
it), and the reads it is computed from -- the paper/live fills in trades and the day's closes in market_data
(the bars the stream records and the batch layer's raw bars)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Iterable

import sqlalchemy as sa

from trading.records import Fill, Liquidity, Side


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), timezone.utc)


def fills_through(conn: sa.Connection, last: date) -> dict[str, list[Fill]]:
    """Every paper/live fill up to the end of ``last``, by account, in time order."""
    rows = conn.execute(sa.text("""
        SELECT fill_id, client_order_id, account, strategy, exchange, symbol, side, price, quantity, fee,
               fee_currency, liquidity, (extract(epoch FROM ts) * 1000000)::bigint * 1000
        FROM trades WHERE mode IN ('paper', 'live') AND ts < :end
        ORDER BY ts, fill_id"""), {"end": _start(last + timedelta(days=1))}).fetchall()
    out: dict[str, list[Fill]] = defaultdict(list)
    for r in rows:
        out[r[2]].append(Fill(r[0], r[1], r[2], r[3], r[4], r[5], Side(r[6]), Decimal(r[7]), Decimal(r[8]),
                              Decimal(r[9]), r[10], Liquidity(r[11]), int(r[12])))
    return dict(out)


def daily_marks(conn: sa.Connection, pairs: Iterable[tuple[str, str]], first: date, last: date,
                interval: str = "1m") -> dict[date, dict[str, Decimal]]:
    """The last close of each UTC day in [first, last] of each (exchange, symbol) of ``pairs``, by day then
    symbol, from market_data."""
    pairs = sorted(set(pairs))
    if not pairs:
        return {}
    rows = conn.execute(sa.text("""
        SELECT DISTINCT ON (symbol, day) symbol, day, close
        FROM (SELECT symbol, (ts AT TIME ZONE 'UTC')::date AS day, ts, close FROM market_data
              WHERE (exchange, symbol) IN (SELECT * FROM unnest(CAST(:ex AS text[]), CAST(:sy AS text[])))
                AND interval = :iv AND ts >= :a AND ts < :b) bars
        ORDER BY symbol, day, ts DESC"""),
        {"ex": [p[0] for p in pairs], "sy": [p[1] for p in pairs], "iv": interval, "a": _start(first),
         "b": _start(last + timedelta(days=1))}).all()
    out: dict[date, dict[str, Decimal]] = defaultdict(dict)
    for symbol, day, close in rows:
        out[day][symbol] = Decimal(close)
    return dict(out)


def replace_day(conn: sa.Connection, as_of: date, rows: Iterable) -> int:
    """Replace every row of ``as_of`` with ``rows`` (trading.performance.StrategyDay), in the caller's
    transaction: a re-run of the day changes nothing else."""
    rows = list(rows)
    conn.execute(sa.text("DELETE FROM strategy_performance WHERE as_of = :d"), {"d": as_of})
    if rows:
        conn.execute(sa.text("""
            INSERT INTO strategy_performance (strategy, account, as_of, trade_count, win_rate, sharpe, max_drawdown,
                                              total_return, pnl, updated_at)
            VALUES (:strategy, :account, :as_of, :trade_count, :win_rate, :sharpe, :max_drawdown, :total_return,
                    :pnl, now())"""),
            [{"strategy": r.strategy, "account": r.account, "as_of": r.as_of, "trade_count": r.trade_count,
              "win_rate": _num(r.win_rate), "sharpe": _num(r.sharpe), "max_drawdown": _num(r.max_drawdown),
              "total_return": _num(r.total_return), "pnl": r.pnl} for r in rows])
    return len(rows)


def _num(x: float | None) -> Decimal | None:
    """A float as exact NUMERIC text; None, NaN and infinities as NULL."""
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return None
    return Decimal(repr(float(x)))


def read_day(conn: sa.Connection, as_of: date) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(sa.text(
        "SELECT * FROM strategy_performance WHERE as_of = :d ORDER BY account, strategy"), {"d": as_of})]
