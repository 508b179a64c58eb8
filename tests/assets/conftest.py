"""Synthetic daily closes in market_data_clean under exchanges of this test directory only."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa

SYMBOLS = ["PFA/USD", "PFB/USD", "PFC/USD"]
FIRST_DAY = date(2026, 10, 15)
LAST_DAY = date(2026, 11, 21)


def insert_closes(engine, exchange: str, symbols: list[str], first: date, last: date, seed: int,
                  skip: dict[str, date] | None = None) -> None:
    """Two 1m bars per day and symbol (12:00 and 23:59 UTC): the day's close is the 23:59 bar's.
    Replaces whatever the exchange had, in one transaction."""
    rng = np.random.default_rng(seed)
    days = (last - first).days + 1
    drift = np.linspace(0.002, 0.004, len(symbols))
    vols = np.linspace(0.02, 0.05, len(symbols))
    shocks = rng.normal(0, 1, (days, len(symbols)))
    shocks[:, 1] = 0.6 * shocks[:, 0] + 0.8 * shocks[:, 1]  # some correlation
    closes = 100 * np.exp(np.cumsum(drift + vols * shocks, axis=0))
    rows = []
    for i in range(days):
        day = first + timedelta(days=i)
        for j, sym in enumerate(symbols):
            if skip and skip.get(sym) == day:
                continue
            for hour, minute, price in ((12, 0, closes[i, j] * 0.99), (23, 59, closes[i, j])):
                ts = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                p = round(float(price), 6)
                rows.append({"exchange": exchange, "symbol": sym, "ts": ts, "p": p, "rid": f"{exchange}|{sym}|{ts}"})
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM market_data_clean WHERE exchange = :e"), {"e": exchange})
        conn.execute(sa.text("""
            INSERT INTO market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            VALUES (:exchange, :symbol, '1m', :ts, :p, :p, :p, :p, 1, :rid)
        """), rows)


@pytest.fixture(scope="module")
def pf_data(engine):
    insert_closes(engine, "test-pf", SYMBOLS, FIRST_DAY, LAST_DAY, seed=5)
    insert_closes(engine, "test-pf-gap", SYMBOLS, FIRST_DAY, LAST_DAY, seed=6, skip={"PFB/USD": date(2026, 11, 3)})
    return "test-pf"
