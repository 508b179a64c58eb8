"""Round trip against the fake Binance on loopback: the real ccxt adapter (streaming.venues.BinanceVenue, REST
order + WS-API user data) from ``submit`` to the FILLED event coming back through ``poll()``, one market order at a
time, and the same through the OMS (OrderManager: outbox release -> venue -> journal).

Orders are spaced 100 ms apart (outside the timed window): back to back, ccxt's own rate limiter paces them
(about 12 ms each here), which is pacing, not latency.  The fake exchange runs in this process on its own thread (tests/fakes/binance.py), so the figure includes its
own handling on the same two cores; a real exchange adds the network.

Run: .venv/bin/python benchmarks/bench_venue.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal

from streaming.venues.binance import BinanceVenue
from tests.fakes.binance import DEFAULT_KEY, DEFAULT_SECRET, FakeBinance
from trading.oms.manager import OrderManager
from trading.records import OrderEvent, OrderRequest, OrderStatus, OrderType, Side

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
# ccxt's limiter (on, as in production: Binance's request weights at its 50 ms rate) spaces back-to-back orders;
# orders are spaced by more than that, outside the timed window, so the figure is the round trip, not the pacing
GAP_S = 0.1


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def order(i: int, account: str, tag: str) -> OrderRequest:
    return OrderRequest(f"{tag}{i}", account, "bench", "binance", "BTC/USDT", Side.BUY if i % 2 else Side.SELL,
                        OrderType.MARKET, Decimal("0.001"), ts=time.time_ns())


async def filled(poll, cid: str) -> None:
    while True:
        for e in poll():
            if isinstance(e, OrderEvent) and e.client_order_id == cid and e.status is OrderStatus.FILLED:
                return
        await asyncio.sleep(0)  # hand the loop to the adapter's tasks; no sleep granularity in the figure


async def main(url: str) -> None:
    venue = BinanceVenue(account="bench", api_key=DEFAULT_KEY, secret=DEFAULT_SECRET, symbols=["BTC/USDT"],
                         api_url=url, budget_per_min=10**6)
    await venue.start()
    try:
        for _ in range(20):  # warm-up: connections, ccxt's first-call work
            o = order(_, "bench", "w")
            venue.submit(o)
            await filled(venue.poll, o.client_order_id)
        direct = []
        for i in range(N):
            o = order(i, "bench", "d")
            t0 = time.perf_counter()
            venue.submit(o)
            await filled(venue.poll, o.client_order_id)
            direct.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(GAP_S)
        oms = OrderManager(venue, account="bench")
        via = []
        for i in range(N):
            o = order(i, "bench", "o")
            t0 = time.perf_counter()
            oms.submit(o)
            oms.drained()  # (the worker commits the batch here)
            oms.release()
            await filled(oms.poll, o.client_order_id)
            via.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(GAP_S)
    finally:
        await venue.close()
    for name, xs in (("adapter", direct), ("through the OMS", via)):
        print(f"loopback round trip, {name} ({N} market orders, submit -> FILLED): p50 {pct(xs, 50):.2f} ms, "
              f"p99 {pct(xs, 99):.2f} ms, max {max(xs):.2f} ms")


if __name__ == "__main__":
    fake = FakeBinance()
    fake.set_balance("USDT", "100000000")
    fake.set_balance("BTC", "1000")
    try:
        asyncio.run(main(fake.start()))
    finally:
        fake.stop()
