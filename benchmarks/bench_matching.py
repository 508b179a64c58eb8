"""Throughput of the matching engine (trading.venue.book.OrderBook) on a mixed event stream.

Events: ~55% passive limit adds around a drifting mid, ~30% cancels of live orders, ~15% marketable
orders (market or crossing limits, some IOC) that match.  The stream is generated first (seeded), then
replayed into a fresh book and timed; prints events/s per run and the best.

For context it also times the whole PaperVenue (Decimal records in and out): bar mode with two orders per
bar, and book mode with 10-level snapshots, trade prints and orders.

    .venv/bin/python benchmarks/bench_matching.py [n_events] [runs]
"""

from __future__ import annotations

import random
import sys
import time
from decimal import Decimal

from trading.records import AggressorSide, Bar, BookLevel, BookSnapshot, OrderRequest, OrderType, Side, Tick
from trading.venue import PaperVenue
from trading.venue.book import GTC, IOC, OrderBook

ADD, CANCEL, TAKE = 0, 1, 2


def make_events(n: int, seed: int = 7) -> list[tuple]:
    rng = random.Random(seed)
    events: list[tuple] = []
    live: list[int] = []  # ids that may still be open (cancels of filled ids are skipped at replay)
    mid = 100_000
    next_id = 0
    for _ in range(n):
        mid += rng.choice((-1, 0, 1))
        r = rng.random()
        if r < 0.55 or not live:
            next_id += 1
            is_buy = rng.random() < 0.5
            offset = 1 + int(rng.expovariate(0.15))  # most orders near the touch
            price = mid - offset if is_buy else mid + offset
            events.append((ADD, next_id, is_buy, rng.randint(1, 20), price, GTC))
            live.append(next_id)
        elif r < 0.85:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            events.append((CANCEL, live.pop()))
        else:
            next_id += 1
            is_buy = rng.random() < 0.5
            kind = rng.random()
            if kind < 0.4:
                price, tif = None, IOC  # market
            else:
                price = mid + 3 if is_buy else mid - 3
                tif = IOC if kind < 0.7 else GTC
            events.append((TAKE, next_id, is_buy, rng.randint(1, 40), price, tif))
            if tif == GTC:
                live.append(next_id)
    return events


def replay(events: list[tuple]) -> tuple[float, int, int]:
    book = OrderBook()
    add, cancel, contains = book.add, book.cancel, book.__contains__
    n_trades = 0
    t0 = time.perf_counter()
    for ev in events:
        if ev[0] == CANCEL:
            if contains(ev[1]):
                cancel(ev[1])
        else:
            _, oid, is_buy, qty, price, tif = ev
            n_trades += len(add(oid, is_buy, qty, price, tif)[1])
    return time.perf_counter() - t0, n_trades, len(book)


def bench_venue_bars(n_bars: int = 20_000) -> None:
    rng = random.Random(1)
    bars, px = [], 30_000.0
    for i in range(n_bars):
        o = px
        px *= 1 + rng.gauss(0, 0.001)
        hi, lo = max(o, px) * 1.0005, min(o, px) * 0.9995
        bars.append(Bar("sim", "BTC/USDT", "1m", i * 60, i * 60, *(Decimal(f"{x:.2f}") for x in (o, hi, lo, px)),
                        Decimal("12.5")))
    v = PaperVenue()
    n_events = 0
    t0 = time.perf_counter()
    for i, b in enumerate(bars):
        n_events += len(v.on_bar(b))
        side = Side.BUY if i % 2 else Side.SELL
        n_events += len(v.submit(OrderRequest(f"m{i}", "a", "s", "sim", "BTC/USDT", side, OrderType.MARKET,
                                              Decimal("0.01"), ts=b.exchange_ts)))
        limit = b.close * (Decimal("0.999") if side is Side.BUY else Decimal("1.001"))
        n_events += len(v.submit(OrderRequest(f"l{i}", "a", "s", "sim", "BTC/USDT", side, OrderType.LIMIT,
                                              Decimal("0.01"), price=limit.quantize(Decimal("0.01")),
                                              ts=b.exchange_ts)))
        if i >= 5:
            n_events += len(v.cancel(f"l{i - 5}", b.exchange_ts))
    secs = time.perf_counter() - t0
    print(f"PaperVenue bar mode: {n_bars:,} bars, {2 * n_bars:,} orders in {secs:.3f} s = "
          f"{n_bars / secs:,.0f} bars/s, {n_events / secs:,.0f} events out/s")


def bench_venue_book(n_steps: int = 10_000) -> None:
    rng = random.Random(2)
    v = PaperVenue(fill_mode="book")
    mid = 300_000  # in ticks of 0.01
    n_events = 0
    t0 = time.perf_counter()
    for i in range(n_steps):
        mid += rng.choice((-1, 0, 1))
        bids = tuple(BookLevel(Decimal(mid - 1 - k) / 100, Decimal(rng.randint(1, 50)) / 10) for k in range(10))
        asks = tuple(BookLevel(Decimal(mid + 1 + k) / 100, Decimal(rng.randint(1, 50)) / 10) for k in range(10))
        n_events += len(v.on_book(BookSnapshot("sim", "BTC/USDT", i * 100, i * 100, bids, asks)))
        side = AggressorSide.BUY if rng.random() < 0.5 else AggressorSide.SELL
        p = Decimal(mid + (1 if side is AggressorSide.BUY else -1)) / 100
        n_events += len(v.on_tick(Tick("sim", "BTC/USDT", i * 100 + 50, i * 100 + 50, p, Decimal("0.3"), side)))
        o_side = Side.BUY if i % 2 else Side.SELL
        n_events += len(v.submit(OrderRequest(f"l{i}", "a", "s", "sim", "BTC/USDT", o_side, OrderType.LIMIT,
                                              Decimal("0.1"), price=Decimal(mid + (-2 if i % 2 else 2)) / 100,
                                              ts=i * 100 + 60)))
        if i % 10 == 0:
            n_events += len(v.submit(OrderRequest(f"m{i}", "a", "s", "sim", "BTC/USDT", o_side, OrderType.MARKET,
                                                  Decimal("0.5"), ts=i * 100 + 70)))
        if i >= 20:
            n_events += len(v.cancel(f"l{i - 20}", i * 100 + 80))
    secs = time.perf_counter() - t0
    print(f"PaperVenue book mode: {n_steps:,} snapshots (10x10 levels) + {n_steps:,} prints + "
          f"{n_steps + n_steps // 10:,} orders in {secs:.3f} s = {n_steps / secs:,.0f} snapshots/s, "
          f"{n_events / secs:,.0f} events out/s")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    events = make_events(n)
    counts = [sum(1 for e in events if e[0] == k) for k in (ADD, CANCEL, TAKE)]
    print(f"events: {n:,} (adds {counts[0]:,}, cancels {counts[1]:,}, marketable {counts[2]:,})")
    best = 0.0
    for run in range(runs):
        secs, n_trades, resting = replay(events)
        rate = n / secs
        best = max(best, rate)
        print(f"run {run + 1}: {secs:.3f} s  {rate:,.0f} events/s  trades {n_trades:,}  resting at end {resting:,}")
    print(f"best: {best:,.0f} events/s on one core")
    bench_venue_bars()
    bench_venue_book()


if __name__ == "__main__":
    main()
