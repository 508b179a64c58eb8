"""Market data producers: separate processes that publish ticks to ``market.ticks`` (keyed by symbol).

    python -m streaming.producers sim                     # the simulated venue in real time (make run)
    python -m streaming.producers replay --speed 10       # 1m bars of market_data_clean, as ticks
    python -m streaming.producers ccxt --exchange binance # ccxt.pro WebSocket trades (network!)

Replayed bars become four prints each (open, then low/high in the order that matches the bar's
direction, then close) a quarter-bar apart, so the stream's bar builder rebuilds the same OHLCV bars.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from decimal import Decimal
from typing import AsyncIterator, Iterable, Iterator

from trading.records import AggressorSide, Bar, Tick

log = logging.getLogger("streaming.producers")
TICKS_TOPIC = "market.ticks"


def encode_tick(t: Tick) -> bytes:
    from streaming.records import to_record

    return to_record(t).dumps()


def bar_ticks(bar: Bar, step_ns: int) -> list[Tick]:
    """Four prints that rebuild ``bar`` exactly (volume split in quarters, the remainder on the close)."""
    path = ((bar.open, bar.low, bar.high, bar.close) if bar.close >= bar.open
            else (bar.open, bar.high, bar.low, bar.close))
    q = (bar.volume / 4).quantize(Decimal("1e-12")) if bar.volume else Decimal(0)
    amounts = (q, q, q, bar.volume - 3 * q)
    out = []
    for i, (p, a) in enumerate(zip(path, amounts)):
        ts = bar.exchange_ts + i * step_ns // 4
        out.append(Tick(bar.exchange, bar.symbol, ts, ts, p, a, AggressorSide.UNKNOWN, f"{bar.exchange_ts}-{i}"))
    return out


def replay_ticks(bars: Iterable[Bar], step_ns: int) -> Iterator[Tick]:
    """Ticks of many symbols' bars in time order (bars must be sorted by open time)."""
    pending: list[Tick] = []
    current: int | None = None
    for bar in bars:
        if current is not None and bar.exchange_ts != current:
            yield from sorted(pending, key=lambda t: t.exchange_ts)
            pending = []
        current = bar.exchange_ts
        pending += bar_ticks(bar, step_ns)
    yield from sorted(pending, key=lambda t: t.exchange_ts)


def load_clean_bars(url: str, symbols: list[str] | None, start: str | None, end: str | None,
                    interval: str = "1m") -> list[Bar]:
    import psycopg

    from streaming.store import dsn, ns_of

    sql = ("SELECT exchange, symbol, interval, ts, open, high, low, close, volume FROM market_data_clean"
           " WHERE interval = %s")
    args: list = [interval]
    if symbols:
        sql += " AND symbol = ANY(%s)"
        args.append(symbols)
    if start:
        sql += " AND ts >= %s::timestamptz"
        args.append(start)
    if end:
        sql += " AND ts < %s::timestamptz"
        args.append(end)
    with psycopg.connect(dsn(url)) as conn:
        rows = conn.execute(sql + " ORDER BY ts, symbol", args).fetchall()
    return [Bar(r[0], r[1], r[2], ns_of(r[3]), ns_of(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]


async def publish(bootstrap: str, ticks: AsyncIterator[Tick], limit: int | None = None,
                  topic: str = TICKS_TOPIC) -> int:
    """Send every tick (key = symbol); returns the count.  Stops cleanly on SIGTERM/SIGINT."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    n = 0
    try:
        async for t in ticks:
            if stop.is_set() or (limit is not None and n >= limit):
                break
            await producer.send(topic, encode_tick(t), key=t.symbol.encode())
            n += 1
            if n % 10_000 == 0:
                log.info("%d ticks published", n)
    finally:
        await producer.stop()  # flushes what is buffered
    return n


async def _only_ticks(records: AsyncIterator) -> AsyncIterator[Tick]:
    async for r in records:
        if isinstance(r, Tick):
            yield r


async def _from_iter(ticks: Iterable[Tick], speed: float | None) -> AsyncIterator[Tick]:
    from trading.marketdata.replay import Replayer

    async for t in Replayer(list(ticks), speed).stream():
        yield t


async def _ccxt_ticks(exchange: str, symbols: list[str]) -> AsyncIterator[Tick]:
    import ccxt.pro as ccxtpro

    from trading.marketdata.live import LiveFeed

    ws = getattr(ccxtpro, exchange)()
    queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)

    async def pump(symbol: str) -> None:
        async for rec in LiveFeed(ws, symbol, "trades"):
            await queue.put(rec)

    tasks = [asyncio.create_task(pump(s)) for s in symbols]
    try:
        while True:
            done = [t for t in tasks if t.done() and t.exception() is not None]
            if done:
                raise done[0].exception()  # type: ignore[misc]
            yield await queue.get()
    finally:
        for t in tasks:
            t.cancel()
        await ws.close()


def main(argv: list[str] | None = None) -> int:
    from deploy.settings import get_settings

    settings = get_settings()
    p = argparse.ArgumentParser(prog="python -m streaming.producers", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=settings.kafka_bootstrap or f"{settings.host}:{settings.broker_port}")
    p.add_argument("--topic-prefix", default=settings.topic_prefix)
    p.add_argument("--limit", type=int, default=None, help="stop after this many ticks")
    sub = p.add_subparsers(dest="source", required=True)
    sim = sub.add_parser("sim", help="the simulated venue in real time")
    sim.add_argument("--speed", type=float, default=1.0, help="1.0 = real time; 0 = as fast as possible")
    sim.add_argument("--seed", type=int, default=settings.sim_seed)
    sim.add_argument("--start-ns", type=int, default=None, help="market time to start at (default: now)")
    rp = sub.add_parser("replay", help="1m bars of market_data_clean, as ticks")
    rp.add_argument("--speed", type=float, default=10.0, help="1.0 = real time; 0 = as fast as possible")
    rp.add_argument("--symbols", nargs="*", default=None)
    rp.add_argument("--start", default=None, help="ISO time, inclusive")
    rp.add_argument("--end", default=None, help="ISO time, exclusive")
    cx = sub.add_parser("ccxt", help="live trades from an exchange over WebSocket (uses the network)")
    cx.add_argument("--exchange", required=True)
    cx.add_argument("--symbols", nargs="*", default=list(settings.symbols))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.source == "sim":
        from trading.marketdata.sim import SimVenue, anchored_config

        speed = args.speed or None
        # the same market as the historical store (assets/market_data.py): one sim, anchored at history_start
        venue = SimVenue(anchored_config(args.seed, settings.history_start, exchange=settings.stream_exchange))
        ticks = _only_ticks(venue.stream(args.start_ns, speed=speed, kinds=("tick",)))
    elif args.source == "replay":
        if not settings.database_url:
            print("replay: DATABASE_URL is not set (the bars come from market_data_clean)", file=sys.stderr)
            return 1
        bars = load_clean_bars(settings.database_url, args.symbols, args.start, args.end)
        if not bars:
            print("replay: no 1m bars in market_data_clean for that selection", file=sys.stderr)
            return 1
        ticks = _from_iter(replay_ticks(bars, 60_000_000_000), args.speed or None)
    else:
        ticks = _ccxt_ticks(args.exchange, args.symbols)
    n = asyncio.run(publish(args.bootstrap, ticks, args.limit, args.topic_prefix + TICKS_TOPIC))
    log.info("done: %d ticks published", n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
