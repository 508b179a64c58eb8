"""Market data producers: separate processes that publish ticks to ``market.ticks`` (keyed by symbol).

    python -m streaming.producers sim                     # the simulated venue in real time (make run)
    python -m streaming.producers replay --speed 10       # 1m bars of market_data_clean, as ticks
    python -m streaming.producers ccxt --exchange binance # ccxt.pro WebSocket trades (network!)

Replayed bars become four prints each (open, then low/high in the order that matches the bar's
direction, then close) a quarter-bar apart, so the stream's bar builder rebuilds the same OHLCV bars.

Wire format: a ``market.ticks`` message carries a micro-batch of ONE symbol's ticks, a JSON array of
TickRecord objects in time order, keyed by that symbol (so partitioning by symbol is unchanged).  A
batch goes out when it holds ``--batch-ticks`` ticks (default 200) or its first tick has waited
``--batch-ms`` (default 5 ms); these producers always send arrays, a batch of one included.  The
worker also accepts a bare TickRecord object (one tick per message, the earlier format).  Batching
exists because the worker's cost per Kafka message (Faust's event machinery, acks, record unpacking)
was ~25x the cost of trading the tick; one message per 200 ticks amortises it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from decimal import Decimal
from typing import AsyncIterator, Iterable, Iterator

from trading.records import AggressorSide, Bar, Tick

log = logging.getLogger("streaming.producers")
TICKS_TOPIC = "market.ticks"
BATCH_TICKS = 200
BATCH_MS = 5.0


def encode_tick(t: Tick) -> bytes:
    """One tick as a TickRecord JSON object (what ``to_record(t).dumps()`` gives, ~4x cheaper)."""
    import orjson

    from streaming.records import to_data

    return orjson.dumps(to_data(t))


def encode_ticks(ticks: list[Tick]) -> bytes:
    """One micro-batch (ticks of one symbol) as a JSON array of TickRecord objects."""
    import orjson

    from streaming.records import to_data

    return orjson.dumps([to_data(t) for t in ticks])


class TickBatcher:
    """Gathers ticks into per-symbol micro-batches: a batch is complete at ``max_ticks`` ticks, or due
    once its first tick has waited ``max_ms`` (``max_ms=0``: every tick is a batch of one).  No I/O and
    no clock of its own, so the rules can be tested directly; BatchSender drives it."""

    def __init__(self, max_ticks: int = BATCH_TICKS, max_ms: float = BATCH_MS) -> None:
        if max_ticks < 1 or max_ms < 0:
            raise ValueError(f"batch of {max_ticks} ticks / {max_ms} ms: need >= 1 tick and >= 0 ms")
        self.max_ticks, self.max_s = max_ticks, max_ms / 1000
        # symbol -> (when the batch falls due: its first tick's time + max_ms, ticks); one float compared
        # both ways, so next_due() and due() agree exactly
        self.pending: dict[str, tuple[float, list[Tick]]] = {}

    def add(self, tick: Tick, now: float) -> list[Tick] | None:
        """Add ``tick``; returns its symbol's batch when that is complete."""
        entry = self.pending.get(tick.symbol)
        if entry is None:
            entry = self.pending[tick.symbol] = (now + self.max_s, [])
        entry[1].append(tick)
        if len(entry[1]) >= self.max_ticks or not self.max_s:
            del self.pending[tick.symbol]
            return entry[1]
        return None

    def next_due(self) -> float | None:
        return min(deadline for deadline, _ in self.pending.values()) if self.pending else None

    def due(self, now: float) -> list[list[Tick]]:
        """Remove and return the batches whose first tick has waited ``max_ms``."""
        late = [sym for sym, (deadline, _) in self.pending.items() if deadline <= now]
        return [self.pending.pop(sym)[1] for sym in late]

    def drain(self) -> list[list[Tick]]:
        out = [ticks for _, ticks in self.pending.values()]
        self.pending.clear()
        return out


class BatchSender:
    """Sends ticks to ``topic`` in micro-batches through an aiokafka producer (key: the symbol).

    Use as ``async with BatchSender(...) as s: await s.add(tick)``; leaving the block sends what is
    pending.  A background task sends batches that fall due by time.  Sends hold one FIFO lock, and the
    timed path takes its due batches only once it holds it and sends them all before letting go: a full
    batch completed meanwhile must not overtake its symbol's earlier batch (the worker would count those
    ticks as late).  That task is asked to stop, never cancelled: a cancel could fall between taking
    due batches and sending them."""

    def __init__(self, producer, topic: str, max_ticks: int = BATCH_TICKS, max_ms: float = BATCH_MS) -> None:
        self.producer, self.topic = producer, topic
        self.batcher = TickBatcher(max_ticks, max_ms)
        self.messages = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "BatchSender":
        self._task = asyncio.create_task(self._send_due())
        return self

    async def __aexit__(self, *exc) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task  # returns within one --batch-ms; raises what stopped it
        for batch in self.batcher.drain():
            await self._send(batch)

    async def add(self, tick: Tick) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # the timed sends failed (a producer error): say so rather than stall
        started = tick.symbol not in self.batcher.pending
        batch = self.batcher.add(tick, time.monotonic())
        if batch is not None:
            await self._send(batch)
        elif started:
            self._wake.set()

    async def _send(self, batch: list[Tick]) -> None:
        async with self._lock:
            await self._send_locked(batch)

    async def _send_locked(self, batch: list[Tick]) -> None:
        await self.producer.send(self.topic, encode_ticks(batch), key=batch[0].symbol.encode())
        self.messages += 1

    async def _send_due(self) -> None:
        while not self._closing:
            nxt = self.batcher.next_due()
            if nxt is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = nxt - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._lock:
                for batch in self.batcher.due(time.monotonic()):
                    await self._send_locked(batch)


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
    """Clean bars of every exchange in [start, end) (ISO times, UTC when no offset), in time order."""
    from datetime import datetime, timezone

    from storage import db, market_data

    def ns(iso: str | None) -> int | None:
        if iso is None:
            return None
        t = datetime.fromisoformat(iso)
        t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000

    with db.engine(url).connect() as conn:
        frame = market_data.load_clean_bars(conn, exchange=None, symbols=symbols, interval=interval,
                                            start_ns=ns(start), end_ns=ns(end))
    # prices back to Decimal through repr: each stored price is the text of a float (exact round trip)
    return [Bar(e, s, i, t, t, *(Decimal(repr(v)) for v in prices))
            for e, s, i, t, *prices in frame.sort("ts", "symbol", "exchange").iter_rows()]


async def publish(bootstrap: str, ticks: AsyncIterator[Tick], limit: int | None = None,
                  topic: str = TICKS_TOPIC, batch_ticks: int = BATCH_TICKS, batch_ms: float = BATCH_MS) -> int:
    """Send every tick in per-symbol micro-batches (key = symbol); returns the count of ticks.  Stops
    cleanly on SIGTERM/SIGINT, sending what is batched."""
    from aiokafka import AIOKafkaProducer

    # no linger of the producer's own: a batch already waited up to batch_ms; 256 KiB fits 200 ticks
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1, max_batch_size=256 * 1024)
    try:
        await producer.start()
    except Exception:
        await producer.stop()  # release its connections before the caller reports the error
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    n = 0
    try:
        async with BatchSender(producer, topic, batch_ticks, batch_ms) as sender:
            async for t in ticks:
                if stop.is_set() or (limit is not None and n >= limit):
                    break
                await sender.add(t)
                n += 1
                if n % 10_000 == 0:
                    log.info("%d ticks published in %d messages", n, sender.messages)
    finally:
        await producer.stop()  # flushes what is buffered
    return n


async def _only_ticks(records: AsyncIterator, symbols: Iterable[str]) -> AsyncIterator[Tick]:
    """The ticks of ``symbols`` (the venue simulates its whole market; the stream trades these)."""
    wanted = frozenset(symbols)
    async for r in records:
        if isinstance(r, Tick) and r.symbol in wanted:
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


def main(argv: list[str] | None = None, prog: str = "python -m streaming.producers") -> int:
    from deploy.settings import get_settings

    settings = get_settings()
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=settings.kafka_bootstrap or f"{settings.host}:{settings.broker_port}")
    p.add_argument("--topic-prefix", default=settings.topic_prefix)
    p.add_argument("--limit", type=int, default=None, help="stop after this many ticks")
    p.add_argument("--batch-ticks", type=int, default=BATCH_TICKS,
                   help="most ticks of one symbol per message (default %(default)s)")
    p.add_argument("--batch-ms", type=float, default=BATCH_MS,
                   help="longest a tick waits for its batch to fill, ms (default %(default)s; 0 = no wait)")
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
    from deploy.redaction import install

    install()

    if args.source == "sim":
        from trading.marketdata.sim import SimVenue, anchored_config

        speed = args.speed or None
        # the same market as the historical store (assets/market_data.py): one sim, anchored at history_start;
        # its ticks of TRADELOOP_SYMBOLS, the symbols the worker trades
        venue = SimVenue(anchored_config(args.seed, settings.history_start, settings.sim_structure,
                                          exchange=settings.stream_exchange))
        unknown = sorted(set(settings.symbols) - set(venue.symbols))
        if unknown:
            print(f"sim: TRADELOOP_SYMBOLS: the sim venue has no {unknown}; it lists {list(venue.symbols)}",
                  file=sys.stderr)
            return 1
        ticks = _only_ticks(venue.stream(args.start_ns, speed=speed, kinds=("tick",)), settings.symbols)
    elif args.source == "replay":
        from datetime import datetime

        import sqlalchemy as sa

        if not settings.database_url:
            print("replay: DATABASE_URL is not set (the bars come from market_data_clean)", file=sys.stderr)
            return 1
        for name in ("start", "end"):
            value = getattr(args, name)
            try:
                value is None or datetime.fromisoformat(value)
            except ValueError:
                p.error(f"--{name} must be an ISO time such as 2026-11-20 or 2026-11-20T12:00Z, got {value!r}")
        try:
            bars = load_clean_bars(settings.database_url, args.symbols, args.start, args.end)
        except sa.exc.OperationalError as exc:
            print(f"replay: cannot read market_data_clean: {str(exc.orig or exc).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        if not bars:
            print("replay: no 1m bars in market_data_clean for that selection", file=sys.stderr)
            return 1
        ticks = _from_iter(replay_ticks(bars, 60_000_000_000), args.speed or None)
    else:
        ticks = _ccxt_ticks(args.exchange, args.symbols)
    if args.batch_ticks < 1 or args.batch_ms < 0:
        p.error("--batch-ticks must be >= 1 and --batch-ms >= 0")
    from aiokafka.errors import KafkaConnectionError

    try:
        n = asyncio.run(publish(args.bootstrap, ticks, args.limit, args.topic_prefix + TICKS_TOPIC,
                                args.batch_ticks, args.batch_ms))
    except KafkaConnectionError:
        print(f"cannot reach the broker at {args.bootstrap}: is the platform up (`tradeloop up`), "
              "or KAFKA_BOOTSTRAP / --bootstrap right?", file=sys.stderr)
        return 1
    log.info("done: %d ticks published", n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
