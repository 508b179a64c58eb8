"""Market-data throughput: ccxt-shaped normalisation and sim generation. Prints a small table.

Run: .venv/bin/python benchmarks/bench_marketdata.py
"""

from __future__ import annotations

import time

from trading.marketdata.normalize import Normalizer
from trading.marketdata.sim import SimVenue
from trading.records import NS_PER_S


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    rows: list[tuple[str, int, float]] = []
    t0_ms = 1_704_067_200_000
    now_ns = (t0_ms + 400 * 86_400_000) * 1_000_000  # after every generated timestamp

    n = 200_000
    trades = [
        {"id": str(i), "timestamp": t0_ms + i, "symbol": "BTC/USDT", "price": 42000.0 + (i % 997) * 0.01,
         "amount": 0.001 * (1 + i % 13), "side": "buy" if i % 2 else "sell", "info": {}}
        for i in range(n)
    ]  # fmt: skip
    dt, out = timed(lambda: Normalizer("binance", now_ns=lambda: now_ns).trades(trades))
    assert len(out) == n
    rows.append(("normalise ccxt trades -> Tick", n, dt))

    candles = [[t0_ms + i * 60_000, 42000.0, 42010.5, 41990.25, 42005.0, 12.345] for i in range(n)]
    dt, out = timed(lambda: Normalizer("binance", now_ns=lambda: now_ns).ohlcv("BTC/USDT", "1m", candles))
    assert len(out) == n
    rows.append(("normalise ccxt OHLCV -> Bar", n, dt))

    venue = SimVenue()
    start = venue.config.origin_ns
    n_bars = 1_000_000
    dt, df = timed(lambda: venue.generate_bars(start, n_bars))
    rows.append((f"sim 1m bars, batch DataFrame ({len(venue.symbols)} symbols, per symbol)", n_bars, dt))
    rows.append((f"sim 1m bars, batch DataFrame (all {len(venue.symbols)} symbols)", df.height, dt))
    dt, _ = timed(lambda: SimVenue().generate_bars(start, n_bars, symbols=["BTC/USDT"]))
    rows.append(("sim 1m bars, cold venue, 1 symbol requested", n_bars, dt))

    hour = 3600 * NS_PER_S
    warm = SimVenue()
    dt, ticks = timed(lambda: sum(1 for _ in warm.ticks(start, start + 4 * hour)))
    rows.append(("sim ticks as Tick records (cold, 3 symbols)", ticks, dt))
    dt, ticks = timed(lambda: sum(1 for _ in warm.ticks(start, start + 4 * hour)))
    rows.append(("sim ticks as Tick records (cached block)", ticks, dt))
    dt, recs = timed(lambda: sum(1 for _ in warm.events(start, start + 4 * hour, kinds=("tick", "quote"))))
    rows.append(("sim ticks + quotes as records", recs, dt))
    dt, bars = timed(lambda: sum(1 for _ in warm.bars(start, 100_000)))
    rows.append(("sim 1m Bar records", bars, dt))

    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'records':>10}  {'seconds':>8}  {'records/s':>12}")
    for name, count, secs in rows:
        print(f"{name:<{width}}  {count:>10,}  {secs:>8.3f}  {count / secs:>12,.0f}")


if __name__ == "__main__":
    main()
