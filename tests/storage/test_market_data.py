"""storage.market_data against the session's PostgreSQL: the one read of clean bars, the daily closes
and the VaR scenario closes, on rows of this file's own exchanges."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

import polars as pl
import pytest
import sqlalchemy as sa

from storage import market_data

NS = 1_000_000_000


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


def _insert(engine, exchange: str, rows: list[tuple]) -> None:
    """rows: (symbol, interval, ts datetime, close text)."""
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            VALUES (:e, :s, :i, :ts, :c, :c, :c, :c, 2.5, :rid)"""),
            [{"e": exchange, "s": s, "i": i, "ts": ts, "c": c, "rid": f"{exchange}|{s}|{i}|{ts}"} for s, i, ts, c in rows])


@pytest.fixture(scope="module")
def bars(engine):
    ex = f"st-md-{uuid.uuid4().hex[:6]}"
    t = lambda h, m: datetime(2026, 11, 20, h, m, tzinfo=timezone.utc)  # noqa: E731
    _insert(engine, ex, [("B/USD", "1m", t(10, 1), "20.1"), ("A/USD", "1m", t(10, 1), "101.234567891"),
                         ("A/USD", "1m", t(10, 0), "100.5"), ("A/USD", "5m", t(10, 0), "99"),
                         ("A/USD", "1m", t(11, 0), "102")])
    _insert(engine, ex + "-other", [("A/USD", "1m", t(10, 0), "555")])
    return ex, t


def test_load_clean_bars_filters_orders_and_reads_prices_exactly(engine, bars):
    ex, t = bars
    with engine.connect() as conn:
        frame = market_data.load_clean_bars(conn, exchange=ex, symbols=["A/USD", "B/USD"], interval="1m",
                                            start_ns=_ns(t(10, 0)), end_ns=_ns(t(11, 0)))
    assert frame.schema == pl.Schema(market_data.CLEAN_BARS_SCHEMA)
    # by symbol then time; the 5m bar, the other exchange and the bar at the (exclusive) end are out
    assert frame.select("symbol", "ts", "close").rows() == [
        ("A/USD", _ns(t(10, 0)), 100.5), ("A/USD", _ns(t(10, 1)), 101.234567891), ("B/USD", _ns(t(10, 1)), 20.1)]
    assert set(frame["exchange"]) == {ex} and set(frame["interval"]) == {"1m"}
    assert repr(frame["close"][1]) == "101.234567891"  # the stored text comes back as the same float


def test_load_clean_bars_open_bounds_every_exchange_and_empty(engine, bars):
    ex, t = bars
    with engine.connect() as conn:
        every = market_data.load_clean_bars(conn, exchange=None, symbols=["A/USD"], interval="1m",
                                            start_ns=_ns(t(10, 0)), end_ns=_ns(t(10, 1)))
        open_ended = market_data.load_clean_bars(conn, exchange=ex, symbols=None, interval="1m")
        none = market_data.load_clean_bars(conn, exchange=ex, symbols=["NOPE/USD"], interval="1m")
    assert {ex, ex + "-other"} <= set(every["exchange"])
    assert open_ended.height == 4
    assert none.height == 0 and none.schema == pl.Schema(market_data.CLEAN_BARS_SCHEMA)


def test_last_clean_ts(engine, bars):
    ex, t = bars
    with engine.connect() as conn:
        assert market_data.last_clean_ts(conn, ex, "A/USD", "1m") == t(11, 0)
        assert market_data.last_clean_ts(conn, ex, "NOPE/USD", "1m") is None


def test_daily_closes_take_the_last_bar_of_each_utc_day(engine):
    ex = f"st-dc-{uuid.uuid4().hex[:6]}"
    d = lambda day, h: datetime(2026, 11, day, h, 0, tzinfo=timezone.utc)  # noqa: E731
    _insert(engine, ex, [("A/USD", "1m", d(1, 12), "10"), ("A/USD", "1m", d(1, 23), "11"),
                         ("A/USD", "1m", d(2, 23), "12"), ("B/USD", "1m", d(2, 5), "50"),
                         ("A/USD", "1m", d(3, 1), "13")])
    with engine.connect() as conn:
        frame = market_data.daily_closes(conn, ex, ["A/USD", "B/USD"], date(2026, 11, 1), date(2026, 11, 2))
        empty = market_data.daily_closes(conn, ex, ["A/USD"], date(2025, 1, 1), date(2025, 1, 2))
    assert frame["day"].to_list() == [date(2026, 11, 1), date(2026, 11, 2)]
    assert frame["A/USD"].to_list() == [11.0, 12.0] and frame["B/USD"].to_list() == [None, 50.0]
    assert empty.height == 0


def test_scenario_closes_bucket_the_window_before_the_newest_row(engine):
    ex = f"st-sc-{uuid.uuid4().hex[:6]}"
    h = lambda day, hour, m=0: datetime(2026, 11, day, hour, m, tzinfo=timezone.utc)  # noqa: E731
    _insert(engine, ex, [("A/USD", "1m", h(1, 10), "1"), ("A/USD", "1m", h(2, 10, 0), "2"),
                         ("A/USD", "1m", h(2, 10, 30), "3"), ("A/USD", "1m", h(3, 10), "4"),
                         ("B/USD", "1m", h(3, 10), "40")])
    with engine.connect() as conn:
        rows = market_data.scenario_closes(conn, ex, "1m", ["A/USD", "B/USD"], step_s=86_400, window_s=2 * 86_400)
    day = lambda d: datetime(2026, 11, d, tzinfo=timezone.utc)  # noqa: E731
    # the window is (newest - 2 days, newest]: the 1st's bar is out; per day the last close
    assert [(s, b, float(c)) for s, b, c in rows] == [("A/USD", day(2), 3.0), ("A/USD", day(3), 4.0),
                                                       ("B/USD", day(3), 40.0)]


def test_the_stream_replay_reads_the_same_bars_as_records_in_time_order(pg_url, bars):
    from decimal import Decimal

    from streaming.producers import load_clean_bars

    ex, t = bars
    got = [b for b in load_clean_bars(pg_url, ["A/USD", "B/USD"], "2026-11-20T10:00", "2026-11-20T11:00Z")
           if b.exchange in (ex, ex + "-other")]
    assert [(b.exchange, b.symbol, b.exchange_ts, b.close) for b in got] == [
        (ex, "A/USD", _ns(t(10, 0)), Decimal("100.5")), (ex + "-other", "A/USD", _ns(t(10, 0)), Decimal("555.0")),
        (ex, "A/USD", _ns(t(10, 1)), Decimal("101.234567891")), (ex, "B/USD", _ns(t(10, 1)), Decimal("20.1"))]
    assert all(b.receive_ts == b.exchange_ts and b.volume == Decimal("2.5") for b in got)
