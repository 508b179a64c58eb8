"""Tick-to-bar aggregation (trading.marketdata.bars) and the one interval parser (timeframes)."""

from decimal import Decimal

import pytest

from trading.marketdata.bars import BarAggregator
from trading.marketdata.timeframes import IntervalError, interval_label, interval_ns
from trading.records import Tick

M = 60_000_000_000


def tick(ts: int, price: str, amount: str = "1", symbol: str = "BTC/USDT") -> Tick:
    return Tick("sim", symbol, ts, ts + 7, Decimal(price), Decimal(amount))


def test_a_bar_is_emitted_by_the_first_tick_of_the_next_interval_with_ohlcv():
    agg = BarAggregator("1m")
    assert agg.update(tick(10 * M + 1, "100")) is None
    assert agg.update(tick(10 * M + 2, "103", "2")) is None
    assert agg.update(tick(10 * M + 3, "99", "0.5")) is None
    assert agg.update(tick(10 * M + 4, "101")) is None
    assert agg.open_ts.get("BTC/USDT") == 10 * M
    bar = agg.update(tick(11 * M, "102"))
    assert bar is not None
    assert (bar.exchange, bar.symbol, bar.interval, bar.exchange_ts, bar.receive_ts) == ("sim", "BTC/USDT", "1m", 10 * M, 11 * M + 7)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (Decimal(100), Decimal(103), Decimal(99), Decimal(101), Decimal("4.5"))
    assert agg.open_ts.get("BTC/USDT") == 11 * M


def test_symbols_are_aggregated_apart_and_empty_intervals_make_no_bar():
    agg = BarAggregator("5m")
    agg.update(tick(0, "1", symbol="A/USD"))
    agg.update(tick(1, "50", symbol="B/USD"))
    assert agg.open_ts.get("C/USD") is None
    bar = agg.update(tick(20 * M, "2", symbol="A/USD"))  # 3 empty 5m intervals skipped: one bar, the old one
    assert bar is not None and bar.exchange_ts == 0 and bar.close == Decimal(1) and bar.interval == "5m"
    assert agg.open_ts.get("A/USD") == 20 * M and agg.open_ts.get("B/USD") == 0


def test_bad_interval_is_refused_with_one_error_type():
    with pytest.raises(IntervalError, match="'1mo'"):
        BarAggregator("1mo")
    for bad in ("0m", "m", "1x", "", None, "1.5h"):
        with pytest.raises(IntervalError):
            interval_ns(bad)


def test_interval_round_trip_and_label():
    for s in ("1s", "1m", "5m", "90m", "4h", "1d", "1w"):
        assert interval_ns(s) == interval_ns(s)  # cached path gives the same answer
    assert interval_ns("4h") == 4 * 60 * M
    assert interval_label(60 * M) == "1h" and interval_label(90 * M) == "90m" and interval_label(7 * 24 * 60 * M) == "1w"
    with pytest.raises(IntervalError):
        interval_label(1_500_000_000)  # 1.5 s is not a whole number of seconds
    with pytest.raises(IntervalError):
        interval_label(0)
