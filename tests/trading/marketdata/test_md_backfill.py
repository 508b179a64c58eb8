"""Backfill against real ccxt exchange objects whose HTTP layer serves recorded-shape JSON (offline)."""

from decimal import Decimal

import ccxt
import pytest
from md_fakes import MINUTE_MS, T0_MS, make_exchange, recorded_candles, recorded_trades

from trading.marketdata.backfill import BackfillArgumentError, BackfillError, RetryPolicy, backfill_ohlcv, backfill_trades, is_transient
from trading.marketdata.normalize import Normalizer

CANDLES = recorded_candles(3000)
TRADES = recorded_trades(10)
NOW_MS = T0_MS + 3000 * MINUTE_MS + 5  # just after the last recorded candle closed
VENUES = [("binance", "BTC/USDT", 1000, 3, 0.05), ("kraken", "BTC/USD", 1000, 5, 1.0), ("coinbase", "BTC/USD", 300, 10, 0.034)]


def test_load_markets_is_offline_impossible_so_we_set_markets():
    ex = ccxt.binance({"enableRateLimit": False})
    ex.fetch = lambda *a, **k: (_ for _ in ()).throw(ccxt.NetworkError("offline"))
    with pytest.raises(ccxt.NetworkError):
        ex.load_markets()


@pytest.mark.parametrize("name, symbol, limit, pages, rate_s", VENUES)
def test_ohlcv_paginates_all_history_exactly(name, symbol, limit, pages, rate_s):
    ex, venue = make_exchange(name, candles=CANDLES, now_ms=NOW_MS)
    sleeps: list[float] = []
    got = list(backfill_ohlcv(ex, symbol, "1m", since_ns=T0_MS * 10**6, limit=limit, sleep=sleeps.append))
    bars = [b for page in got for b in page]
    assert len(got) == pages and len(venue.requests) == pages
    assert [b.exchange_ts // 10**6 for b in bars] == [c[0] for c in CANDLES]
    assert all(b.exchange == name and b.symbol == symbol for b in bars)
    assert (bars[7].open, bars[7].high, bars[7].low, bars[7].close, bars[7].volume) == tuple(Decimal(x) for x in CANDLES[7][1:])
    assert sleeps == [rate_s] * (pages - 1)  # ccxt's rateLimit between consecutive requests


def test_ohlcv_resumes_after_last_stored_and_stops_at_until():
    ex, venue = make_exchange("binance", candles=CANDLES, now_ms=NOW_MS)
    last_stored = (T0_MS + 1999 * MINUTE_MS) * 10**6
    until = (T0_MS + 2500 * MINUTE_MS) * 10**6
    bars = [b for p in backfill_ohlcv(ex, "BTC/USDT", "1m", last_stored_ns=last_stored, until_ns=until, sleep=lambda s: None) for b in p]
    assert bars[0].exchange_ts == last_stored + MINUTE_MS * 10**6 and bars[-1].exchange_ts == until - MINUTE_MS * 10**6
    assert len(bars) == 500 and "startTime=%d" % (T0_MS + 2000 * MINUTE_MS) in venue.requests[0]


def test_ohlcv_never_yields_the_forming_bar():
    ex, _ = make_exchange("binance", candles=CANDLES, now_ms=T0_MS + 100 * MINUTE_MS + 30_000)
    bars = [b for p in backfill_ohlcv(ex, "BTC/USDT", "1m", since_ns=T0_MS * 10**6, sleep=lambda s: None) for b in p]
    assert bars[-1].exchange_ts == (T0_MS + 99 * MINUTE_MS) * 10**6


@pytest.mark.parametrize("error", [ccxt.NetworkError("reset"), ccxt.RequestTimeout("slow"), ccxt.DDoSProtection("429")])
def test_transient_errors_are_retried_with_backoff(error):
    ex, venue = make_exchange("kraken", candles=CANDLES[:100], now_ms=NOW_MS)
    venue.failures = [error, error]
    sleeps: list[float] = []
    bars = [b for p in backfill_ohlcv(ex, "BTC/USD", "1m", since_ns=T0_MS * 10**6, sleep=sleeps.append,
                                      retry=RetryPolicy(max_attempts=3, base_delay_s=0.5)) for b in p]  # fmt: skip
    assert len(bars) == 100
    assert sleeps[:4] == [0.5, 1.0, 1.0, 1.0]  # backoff 0.5, rate limit, backoff 1.0, rate limit


def test_persistent_transient_errors_give_up_clearly():
    ex, venue = make_exchange("binance", candles=CANDLES, now_ms=NOW_MS)
    venue.failures = [ccxt.RequestTimeout("slow")] * 10
    with pytest.raises(BackfillError, match=r"gave up after 4 attempts.*RequestTimeout") as info:
        list(backfill_ohlcv(ex, "BTC/USDT", "1m", since_ns=T0_MS * 10**6, sleep=lambda s: None, retry=RetryPolicy(max_attempts=4)))
    assert isinstance(info.value.__cause__, ccxt.RequestTimeout) and len(venue.requests) == 4


@pytest.mark.parametrize(
    "name, symbol, status, payload, ccxt_error",
    [
        ("kraken", "BTC/USD", 200, {"error": ["EQuery:Unknown asset pair"], "result": {}}, ccxt.ExchangeError),
        ("binance", "BTC/USDT", 400, {"code": -1121, "msg": "Invalid symbol."}, ccxt.BadSymbol),
    ],
)
def test_exchange_errors_end_with_a_clear_error_without_retry(name, symbol, status, payload, ccxt_error):
    ex, venue = make_exchange(name, candles=CANDLES, now_ms=NOW_MS)
    venue.error = (status, payload)
    with pytest.raises(BackfillError, match=rf"{name} fetch_ohlcv\({symbol}, 1m.*{ccxt_error.__name__}") as info:
        list(backfill_ohlcv(ex, symbol, "1m", since_ns=T0_MS * 10**6, sleep=lambda s: None))
    assert isinstance(info.value.__cause__, ccxt_error) and len(venue.requests) == 1


@pytest.mark.parametrize("name, symbol, kw", [("binance", "BTC/USDT", {}), ("kraken", "BTC/USD", {}), ("coinbase", "BTC/USD", {"window_ms": 600_000})])
def test_trades_paginate_dedupe_and_stop_at_until(name, symbol, kw):
    ex, venue = make_exchange(name, trades=TRADES, now_ms=NOW_MS)
    until_ms = T0_MS + 8 * MINUTE_MS
    norm = Normalizer(name)
    pages = list(backfill_trades(ex, symbol, since_ns=T0_MS * 10**6, until_ns=until_ms * 10**6, limit=100,
                                 normalizer=norm, sleep=lambda s: None, **kw))  # fmt: skip
    ticks = [t for p in pages for t in p]
    want = [t for t in TRADES if t["ms"] < until_ms]
    assert [t.trade_id for t in ticks] == [str(t["id"]) for t in want]
    assert ticks[5].price == Decimal(want[5]["price"]) and ticks[5].side.value == want[5]["side"]
    assert len(pages) > 3  # it really paginated
    assert set(norm.rejected) <= {("tick", "duplicate")}  # overlaps are counted, nothing else rejected


def test_trades_resume_from_last_stored():
    ex, _ = make_exchange("binance", trades=TRADES, now_ms=NOW_MS)
    mid = TRADES[300]["ms"]
    ticks = [t for p in backfill_trades(ex, "BTC/USDT", last_stored_ns=mid * 10**6, sleep=lambda s: None) for t in p]
    assert [t.trade_id for t in ticks] == [str(t["id"]) for t in TRADES if t["ms"] >= mid]


def test_arguments_and_classification():
    ex, _ = make_exchange("binance", candles=CANDLES, now_ms=NOW_MS)
    with pytest.raises(BackfillArgumentError, match="since_ns or last_stored_ns"):
        list(backfill_ohlcv(ex, "BTC/USDT", "1m"))
    assert is_transient(ccxt.RateLimitExceeded("x")) and is_transient(ccxt.OnMaintenance("x")) and is_transient(TimeoutError())
    assert not is_transient(ccxt.BadSymbol("x")) and not is_transient(ccxt.AuthenticationError("x")) and not is_transient(ValueError())
