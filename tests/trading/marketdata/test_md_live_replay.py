import asyncio

import ccxt
import pytest
from md_fakes import MINUTE_MS, T0_MS, make_exchange, recorded_trades

from trading.marketdata.live import Backoff, LiveFeed, LiveFeedArgumentError, LiveFeedError
from trading.marketdata.normalize import Normalizer
from trading.marketdata.replay import Replayer, ReplayOrderError, ReplaySpeedError
from trading.ports import MarketDataSource
from trading.records import NS_PER_S, Bar, Tick

TRADES = recorded_trades(10)
NOW_MS = T0_MS + 20 * MINUTE_MS


def unified(t: dict) -> dict:
    """A trade as ccxt.pro's watch_trades returns it."""
    return {"id": str(t["id"]), "timestamp": t["ms"], "symbol": "BTC/USDT", "price": t["price"], "amount": t["amount"], "side": t["side"]}


class FakeWs:
    """watch_* serve scripted results: a list of trades/ticker/book, or an exception to raise."""

    id = "binance"

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.calls = 0
        self.closed = False

    async def _next(self):
        self.calls += 1
        if not self.script:
            raise asyncio.CancelledError  # end of the recording: stop the consumer
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def watch_trades(self, symbol):
        return await self._next()

    async def watch_ticker(self, symbol):
        return await self._next()

    async def watch_order_book(self, symbol, limit=None):
        return await self._next()

    async def close(self):
        self.closed = True


async def collect(feed: LiveFeed) -> list:
    out = []
    try:
        async for rec in feed:
            out.append(rec)
    except asyncio.CancelledError:
        pass
    return out


def test_drop_mid_stream_recovers_missed_trades_from_rest():
    tape = [unified(t) for t in TRADES[:300]]
    # WS delivers 0-99, drops twice (trades 100-199 are missed), then resumes with 200-299
    ws = FakeWs([tape[0:50], tape[50:100], ccxt.NetworkError("socket closed"), ccxt.RequestTimeout("ping"), tape[200:250], tape[250:300]])
    rest, venue = make_exchange("binance", trades=TRADES, now_ms=NOW_MS)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    feed = LiveFeed(ws, "BTC/USDT", "trades", rest=rest, normalizer=Normalizer("binance", now_ns=lambda: NOW_MS * 10**6),
                    backoff=Backoff(base_s=1.0, jitter=0.5, seed=1), sleep=sleep, rest_sleep=lambda s: None)  # fmt: skip
    recs = asyncio.run(collect(feed))
    assert [r.trade_id for r in recs] == [t["id"] for t in tape]  # complete, in order, no duplicates
    assert all(isinstance(r, Tick) for r in recs)
    assert feed.reconnects == 2 and feed.recovered == 100 and len(venue.requests) >= 1
    assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0  # exponential, jittered down by at most half
    # seeded jitter: the same seed gives the same waits
    again = LiveFeed(FakeWs([ccxt.NetworkError("x"), ccxt.NetworkError("y")]), "BTC/USDT", "trades",
                     backoff=Backoff(base_s=1.0, jitter=0.5, seed=1), sleep=sleep)  # fmt: skip
    slept.clear()
    asyncio.run(collect(again))
    assert slept == feed.delays


def test_non_transient_error_is_raised_clearly():
    feed = LiveFeed(FakeWs([ccxt.BadSymbol("no such market")]), "BTC/USDT", "trades")
    with pytest.raises(LiveFeedError, match="binance trades BTC/USDT: BadSymbol"):
        asyncio.run(collect(feed))


def test_gives_up_after_max_failures():
    async def sleep(s: float) -> None:
        return None

    feed = LiveFeed(FakeWs([ccxt.NetworkError("down")] * 5), "BTC/USDT", "ticker", max_failures=3, sleep=sleep)
    with pytest.raises(LiveFeedError, match="gave up after 4 consecutive errors"):
        asyncio.run(collect(feed))


def test_ticker_and_book_channels_resubscribe():
    now = NOW_MS * 10**6
    tick = {"symbol": "BTC/USDT", "timestamp": NOW_MS - 10, "bid": 1.0, "ask": 1.1, "bidVolume": 2.0, "askVolume": 3.0}
    book = {"symbol": "BTC/USDT", "timestamp": NOW_MS - 5, "nonce": 1, "bids": [[1.0, 1.0]], "asks": [[1.1, 1.0]]}

    async def sleep(s: float) -> None:
        return None

    ws = FakeWs([tick, ccxt.NetworkError("x"), dict(tick, timestamp=NOW_MS - 1, bid=1.2)])  # second one crossed
    feed = LiveFeed(ws, "BTC/USDT", "ticker", normalizer=Normalizer("binance", now_ns=lambda: now), sleep=sleep)
    quotes = asyncio.run(collect(feed))
    assert len(quotes) == 1 and feed.normalizer.rejected == {("quote", "crossed_book"): 1} and feed.reconnects == 1
    books = asyncio.run(collect(LiveFeed(FakeWs([book]), "BTC/USDT", "order_book", book_limit=5,
                                         normalizer=Normalizer("binance", now_ns=lambda: now))))  # fmt: skip
    assert books[0].sequence == 1
    with pytest.raises(LiveFeedArgumentError, match="channel"):
        LiveFeed(ws, "BTC/USDT", "candles")
    asyncio.run(feed.aclose())
    assert ws.closed


def _bars(n: int, step_s: int = 60) -> list[Bar]:
    from decimal import Decimal

    return [Bar("x", "A/B", "1m", T0_MS * 10**6 + i * step_s * NS_PER_S, 0, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(1)) for i in range(n)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 10**12
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += int(round(s * 1e9))

    async def async_sleep(self, s: float) -> None:
        self.sleep(s)


@pytest.mark.parametrize("speed, per_bar", [(1.0, 60.0), (10.0, 6.0), (None, None), ("max", None)])
def test_replay_paces_sync_and_async(speed, per_bar):
    for mode in ("sync", "async"):
        clock = FakeClock()
        rep = Replayer(_bars(5), speed, clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep)
        if mode == "sync":
            out = list(rep)
        else:
            async def run():
                return [r async for r in rep.stream()]

            out = asyncio.run(run())
        assert len(out) == 5
        assert clock.slept == ([] if per_bar is None else [pytest.approx(per_bar)] * 4)


def test_replay_catches_up_when_the_consumer_is_slow():
    clock = FakeClock()
    rep = Replayer(_bars(3), 1.0, clock=clock, sleep=clock.sleep)
    it = iter(rep)
    next(it)
    clock.now += 90 * NS_PER_S  # consumer busy for 90 s: bar 2 (due at +60 s) is late, bar 3 due at +120 s
    next(it)
    next(it)
    assert clock.slept == [pytest.approx(30.0)]


def test_replay_rejects_unsorted_records_and_bad_speed():
    bars = _bars(3)
    with pytest.raises(ReplayOrderError, match="sort by available_ts"):
        list(Replayer([bars[1], bars[0]]))
    with pytest.raises(ReplaySpeedError, match="speed"):
        Replayer(bars, 0)
    with pytest.raises(ReplaySpeedError, match="speed"):
        Replayer(bars, "fast")


def test_replay_is_a_market_data_source():
    bars = _bars(10)
    rep = Replayer(bars)
    assert isinstance(rep, MarketDataSource)
    assert rep.fetch_bars("A/B", "1m", bars[2].exchange_ts, bars[5].exchange_ts) == bars[2:5]
    assert rep.fetch_bars("C/D", "1m", 0, 2**62) == []
