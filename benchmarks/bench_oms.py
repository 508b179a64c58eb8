"""OMS speed: overhead from decision to request sent, and orders per second through the state machine.

1. Overhead: an exchange-like venue (``external``: the OMS holds each order until its intent is committed).
   Timed from ``OrderManager.submit`` (the engine's decision) through ``drained()`` and ``release()`` to the
   moment the venue's ``submit`` is entered -- the OMS's own work; the PostgreSQL commit between drained and
   release is the store's, measured by benchmarks/bench_stream.py's batch writes.
2. Throughput: complete order lives (NEW, SUBMITTING, ACK, FILLED and the fill, every transition journalled)
   against the paper venue (TickFillVenue over PaperVenue), one market order and one tick that fills it at a
   time -- the seed's 10,000 orders/s target.

Run: .venv/bin/python benchmarks/bench_oms.py
"""

from __future__ import annotations

import gc
import time
from decimal import Decimal

from streaming.trader import TickFillVenue
from trading.oms.manager import OrderManager
from trading.records import NS_PER_S, OrderRequest, OrderType, Side, Tick
from trading.venue import PaperVenue

T0 = 1_700_000_000 * NS_PER_S
N = 50_000


class TimedVenue:
    external = True

    def __init__(self) -> None:
        self.at: list[int] = []

    def submit(self, order):
        self.at.append(time.perf_counter_ns())
        return []

    def cancel(self, cid, ts):
        return []

    def replace(self, *a):
        return []

    def query(self, *a):
        pass

    def poll(self):
        return []

    def on_tick(self, t):
        return []

    def on_bar(self, b):
        return []

    def open_orders(self, symbol=None):
        return []

    def health(self):
        return "ok", None


def orders(n: int, prefix: str) -> list[OrderRequest]:
    return [OrderRequest(f"{prefix}{i}", "bench", "s", "sim", "BTC/USDT", Side.BUY if i % 2 else Side.SELL,
                         OrderType.MARKET, Decimal("0.01"), ts=T0 + i) for i in range(n)]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def overhead() -> None:
    venue = TimedVenue()
    oms = OrderManager(venue, account="bench")
    lat = []
    gc.disable()
    for o in orders(N, "x"):
        t0 = time.perf_counter_ns()
        oms.submit(o)
        oms.drained()
        oms.release()
        lat.append((venue.at[-1] - t0) / 1000)
        if len(oms.orders) > 1000:  # keep the open book the size of a busy account's
            oms.orders.clear()
            oms.events_sink.clear()
            oms.orders_sink.clear()
    gc.enable()
    print(f"decision -> request sent (external venue, {N} orders): p50 {pct(lat, 50):.1f} us, "
          f"p99 {pct(lat, 99):.1f} us, max {max(lat):.1f} us")


def throughput() -> None:
    oms = OrderManager(TickFillVenue(PaperVenue("sim")), account="bench")
    oms.on_tick(Tick("sim", "BTC/USDT", T0 - 1, T0 - 1, Decimal(100), Decimal(1)))
    batch = orders(N, "p")
    ticks = [Tick("sim", "BTC/USDT", T0 + i, T0 + i, Decimal(100), Decimal(1)) for i in range(N)]
    fills = 0
    gc.disable()
    t0 = time.perf_counter()
    for o, t in zip(batch, ticks):
        oms.submit(o)
        fills += len(oms.on_tick(t))
        if len(oms.events_sink) > 10_000:  # the stream drains its batches every few ms
            oms.events_sink.clear()
            oms.orders_sink.clear()
    dt = time.perf_counter() - t0
    gc.enable()
    assert not oms.orders, "orders left open"
    print(f"paper venue through the OMS: {N / dt:,.0f} orders/s ({N} complete lives in {dt:.2f} s, "
          f"{fills} events and fills returned)")


if __name__ == "__main__":
    overhead()
    throughput()
