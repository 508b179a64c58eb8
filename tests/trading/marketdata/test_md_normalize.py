import logging
from decimal import Decimal

import pytest

from trading.marketdata import normalize as n
from trading.marketdata.normalize import Normalizer
from trading.records import AggressorSide

NOW_MS = 1_700_000_000_000
NOW = NOW_MS * 1_000_000


def norm(**kw) -> Normalizer:
    return Normalizer("binance", now_ns=lambda: NOW, **kw)


def trade(i: int, ts: int = NOW_MS - 1000, **kw) -> dict:
    t = {"id": str(i), "timestamp": ts, "symbol": "BTC/USDT", "price": 42000.1, "amount": 0.015, "side": "buy"}
    t.update(kw)
    return t


def test_trades_convert_exactly():
    out = norm().trades([trade(1, price=0.1 + 0.2, amount="0.00012345"), trade(2, side=None, price="42000.10")])
    assert out[0].price == Decimal("0.30000000000000004") and out[0].amount == Decimal("0.00012345")
    assert out[0].exchange_ts == (NOW_MS - 1000) * 1_000_000 and out[0].receive_ts == NOW
    assert out[0].side is AggressorSide.BUY and out[0].trade_id == "1" and out[0].exchange == "binance"
    assert out[1].side is AggressorSide.UNKNOWN and str(out[1].price) == "42000.10"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (trade(1, price=float("nan")), n.NOT_FINITE),
        (trade(1, amount=float("inf")), n.NOT_FINITE),
        (trade(1, price=0), n.NON_POSITIVE_PRICE),
        (trade(1, price=-5.0), n.NON_POSITIVE_PRICE),
        (trade(1, amount=-1), n.NON_POSITIVE_SIZE),
        (trade(1, ts=NOW_MS + 60_000), n.TS_IN_FUTURE),
        (trade(1, ts=1_000), n.TS_BEFORE_EPOCH),
        (trade(1, ts=None), n.MALFORMED),
        (trade(1, ts="1700000000000"), n.MALFORMED),
        (trade(1, price="abc"), n.MALFORMED),
        (trade(1, side="long"), n.MALFORMED),
        (trade(1, side=["buy"]), n.MALFORMED),
        (trade(1, symbol=None), n.MALFORMED),
        ({"foo": 1}, n.MALFORMED),
        ("not a dict", n.MALFORMED),
    ],
)
def test_bad_trades_are_counted_and_logged_not_raised(bad, reason, caplog):
    nz = norm()
    with caplog.at_level(logging.WARNING, logger="tradeloop.marketdata"):
        out = nz.trades([bad, trade(99)])
    assert [t.trade_id for t in out] == ["99"]
    assert nz.rejected == {("tick", reason): 1}
    assert nz.accepted["tick"] == 1
    assert len([r for r in caplog.records if r.name == "tradeloop.marketdata"]) == 1
    assert reason in caplog.records[0].getMessage()


def test_duplicates_and_out_of_order_per_stream():
    nz = norm()
    first = nz.trades([trade(1, ts=NOW_MS - 500), trade(2, ts=NOW_MS - 400)])
    again = nz.trades([trade(2, ts=NOW_MS - 400), trade(3, ts=NOW_MS - 900), trade(4, ts=NOW_MS - 400)])
    assert [t.trade_id for t in first] == ["1", "2"] and [t.trade_id for t in again] == ["4"]
    assert nz.rejected == {("tick", n.DUPLICATE): 1, ("tick", n.OUT_OF_ORDER): 1}
    # another symbol is another stream
    assert len(nz.trades([trade(3, ts=NOW_MS - 900, symbol="ETH/USDT")])) == 1


def test_dedupe_window_is_bounded():
    nz = norm(dedupe_window=3)
    nz.trades([trade(i, ts=NOW_MS - 100) for i in range(10)])
    assert len(nz._seen[("tick", "BTC/USDT")]) == 3


def test_future_tolerance_is_configurable():
    assert norm(max_future_ns=120 * 10**9).trades([trade(1, ts=NOW_MS + 60_000)])


def test_ohlcv_rows():
    nz = norm()
    rows = [
        [NOW_MS - 120_000, 10.0, 11.0, 9.5, 10.5, 3.25],
        [NOW_MS - 60_000, "10.5", "10.9", "10.1", "10.2", "0"],
        [NOW_MS - 60_000, 10.5, 10.9, 10.1, 10.2, 0],  # same bar again
        [NOW_MS, 10.0, 9.0, 9.5, 10.5, 1],  # high below close
        [NOW_MS, 10.0, 11.0, 9.5, 10.5, -1],
        [NOW_MS, 10.0, 11.0, 9.5, 10.5],
        [NOW_MS, 10.0, 11.0, 0, 10.5, 1],
        [NOW_MS, 10.0, 11.0, 9.5, 10.5, None],
    ]
    bars = nz.ohlcv("BTC/USDT", "1m", rows)
    assert len(bars) == 2 and bars[1].volume == Decimal("0") and bars[0].high == Decimal("11.0")
    assert nz.rejected == {
        ("bar", n.DUPLICATE): 1, ("bar", n.OHLC_INCONSISTENT): 1, ("bar", n.NEGATIVE_SIZE): 1,
        ("bar", n.MALFORMED): 2, ("bar", n.NON_POSITIVE_PRICE): 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="interval"):
        nz.ohlcv("BTC/USDT", "1x", rows)


def test_ticker_to_quote():
    nz = norm()
    raw = {"symbol": "BTC/USDT", "timestamp": NOW_MS, "bid": 100.5, "ask": 100.6, "bidVolume": 2.0, "askVolume": 0.5}
    q = nz.ticker(raw)
    assert q.bid == Decimal("100.5") and q.ask_size == Decimal("0.5") and q.exchange_ts == NOW
    assert nz.ticker(dict(raw, timestamp=NOW_MS + 1, bid=100.6)) is None
    assert nz.ticker(dict(raw, timestamp=NOW_MS + 2, bidVolume=None)) is None
    assert nz.ticker(dict(raw, timestamp=None)) is None
    assert nz.rejected == {("quote", n.CROSSED_BOOK): 1, ("quote", n.MALFORMED): 2}
    assert norm(receive_ts_if_missing=True).ticker(dict(raw, timestamp=None)).exchange_ts == NOW


def test_order_book():
    nz = norm()
    raw = {"symbol": "BTC/USDT", "timestamp": NOW_MS, "nonce": 7,
           "bids": [[100.0, 1.0], [99.5, 2.0, 3]], "asks": [[100.5, 1.5], [101.0, 0.0]]}  # fmt: skip
    book = nz.order_book(raw)
    assert book.bids[1].price == Decimal("99.5") and book.asks[1].size == 0 and book.sequence == 7
    assert nz.order_book(dict(raw, nonce=8, bids=[[101.0, 1.0]])) is None  # crossed
    assert nz.order_book(dict(raw, nonce=9, asks=[[101.0, 1.0], [100.5, 1.0]])) is None  # unsorted
    assert nz.order_book(dict(raw, nonce=10, asks=[[101.0, -1.0]])) is None
    assert nz.order_book(dict(raw, nonce=7)) is None  # same snapshot again
    assert nz.rejected == {
        ("book", n.CROSSED_BOOK): 1, ("book", n.MALFORMED): 1, ("book", n.NEGATIVE_SIZE): 1, ("book", n.DUPLICATE): 1,
    }  # fmt: skip
