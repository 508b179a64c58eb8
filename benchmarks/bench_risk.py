"""Risk engine speed: pre-trade check() latency with 1,000 open orders and 100 positions, price
update latency, and VaR/CVaR timings for a 100-asset portfolio over 1,000 scenarios.

Run: .venv/bin/python benchmarks/bench_risk.py
"""

from __future__ import annotations

import gc
import time
from decimal import Decimal

import numpy as np

from trading.records import Fill, Liquidity, OrderEvent, OrderRequest, OrderStatus, OrderType, Side
from trading.risk import RiskEngine, RiskLimits
from trading.risk.var import var_cvar

N_SYMBOLS = 100
N_OPEN = 1_000
N_CHECKS = 20_000
SYMBOLS = [f"S{i:03d}/USDT" for i in range(N_SYMBOLS)]
STRATEGIES = [f"strat{i}" for i in range(10)]


def build_engine() -> tuple[RiskEngine, list[int]]:
    now = [1_700_000_000 * 10**9]
    sectors = {s: f"sector{i % 8}" for i, s in enumerate(SYMBOLS)}
    limits = RiskLimits.from_dict({
        "restricted_symbols": ["BAD/USDT"],
        "sector_map": sectors,
        "symbol_defaults": {"tick_size": "0.01", "lot_size": "0.001", "collar_bps": 500,
                            "max_order_quantity": 1_000, "max_order_notional": 1_000_000, "max_position": 100_000},
        "account": {"max_gross_exposure": 1e9, "max_net_exposure": 1e9, "max_open_orders": 100_000,
                    "max_leverage": 50, "margin_rate": 0.1},
        "strategy_defaults": {"max_gross_exposure": 1e9, "max_net_exposure": 1e9, "max_open_orders": 100_000,
                              "max_orders_per_second": 1_000_000, "max_orders_per_minute": 10_000_000},
        "assets": {s.split("/")[0]: {"max_gross_exposure": 1e9, "max_net_exposure": 1e9} for s in SYMBOLS},
        "sectors": {f"sector{i}": {"max_gross_exposure": 1e9, "max_net_exposure": 1e9} for i in range(8)},
        "drawdown": {"reduce_at": 0.5, "stop_entries_at": 0.6, "flatten_at": 0.9},
    })
    eng = RiskEngine(limits, "bench", Decimal(100_000_000), clock=lambda: now[0])
    for i, sym in enumerate(SYMBOLS):
        eng.on_price(sym, Decimal(100 + i), now[0])
    for i, sym in enumerate(SYMBOLS):  # 100 positions
        strat = STRATEGIES[i % len(STRATEGIES)]
        o = OrderRequest(f"pos{i}", "bench", strat, "paper", sym, Side.BUY, OrderType.MARKET, Decimal(10))
        assert eng.check(o).approved
        eng.on_fill(Fill(f"fill{i}", o.client_order_id, "bench", strat, "paper", sym, Side.BUY, Decimal(100 + i),
                         Decimal(10), Decimal(0), "USDT", Liquidity.TAKER, now[0]))
        eng.on_order_event(OrderEvent(o.client_order_id, "bench", strat, sym, OrderStatus.FILLED, Decimal(10),
                                      Decimal(0), now[0]))
    for k in range(N_OPEN):  # 1,000 resting orders, bids below and asks above the market
        i = k % N_SYMBOLS
        buy = k % 2 == 0
        px = Decimal(100 + i) + (Decimal(-1) if buy else Decimal(1)) * Decimal("0.1") * (1 + k // 100)
        o = OrderRequest(f"open{k}", "bench", STRATEGIES[k % 10], "paper", SYMBOLS[i],
                         Side.BUY if buy else Side.SELL, OrderType.LIMIT, Decimal("0.5"), px)
        d = eng.check(o)
        assert d.approved, d
        now[0] += 1_000
    return eng, now


def bench_check() -> None:
    eng, now = build_engine()
    rng = np.random.default_rng(1)
    orders = []
    for n in range(N_CHECKS):
        i = int(rng.integers(N_SYMBOLS))
        buy = bool(rng.integers(2))
        # passive prices (inside our own quotes would be self-trade rejects, measured separately below)
        px = Decimal(100 + i) + (Decimal("-0.5") if buy else Decimal("0.5"))
        orders.append(OrderRequest(f"chk{n}", "bench", STRATEGIES[n % 10], "paper", SYMBOLS[i],
                                   Side.BUY if buy else Side.SELL, OrderType.LIMIT,
                                   Decimal("0.001") * (1 + n), px))  # distinct: no duplicate rejects
    times = np.empty(N_CHECKS, dtype=np.int64)
    approved = 0
    gc.disable()
    for n, o in enumerate(orders):
        t0 = time.perf_counter_ns()
        d = eng.check(o)
        times[n] = time.perf_counter_ns() - t0
        now[0] += 1_000
        if d.approved:  # cancel at once so the book stays at 1,000 open orders (not timed)
            approved += 1
            eng.on_order_event(OrderEvent(o.client_order_id, "bench", o.strategy, o.symbol, OrderStatus.CANCELED,
                                          Decimal(0), o.quantity, now[0]))
    gc.enable()
    assert eng.metrics()["open_orders"] == N_OPEN
    rejects = {k: v for k, v in eng.counters.items() if k.startswith("rejected:")}
    us = times / 1_000
    print(f"check() approved path, {N_OPEN} open orders, {N_SYMBOLS} positions, {N_CHECKS} orders "
          f"({approved} approved): p50 {np.percentile(us, 50):.1f} us, p99 {np.percentile(us, 99):.1f} us, "
          f"max {us.max():.1f} us; rejects {rejects}")

    # early rejects (restricted symbol) and late rejects (self-trade: a buy crossing our own ask)
    for label, make in (
        ("restricted_symbol reject", lambda n: OrderRequest(f"r{n}", "bench", "strat0", "paper", "BAD/USDT",
                                                            Side.BUY, OrderType.MARKET, Decimal(1))),
        ("self_trade reject", lambda n: OrderRequest(f"x{n}", "bench", "strat0", "paper", SYMBOLS[1],
                                                     Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal(102))),
    ):
        ts = np.empty(5_000, dtype=np.int64)
        for n in range(5_000):
            o = make(n)
            t0 = time.perf_counter_ns()
            d = eng.check(o)
            ts[n] = time.perf_counter_ns() - t0
            assert not d.approved
        print(f"check() {label}: p50 {np.percentile(ts / 1e3, 50):.1f} us, p99 {np.percentile(ts / 1e3, 99):.1f} us")

    ts = np.empty(20_000, dtype=np.int64)
    for n in range(20_000):
        sym = SYMBOLS[n % N_SYMBOLS]
        px = Decimal(100 + n % N_SYMBOLS) + Decimal(n % 7) / 100
        now[0] += 1_000
        t0 = time.perf_counter_ns()
        eng.on_price(sym, px, now[0])
        ts[n] = time.perf_counter_ns() - t0
    print(f"on_price(): p50 {np.percentile(ts / 1e3, 50):.1f} us, p99 {np.percentile(ts / 1e3, 99):.1f} us")


def bench_var() -> None:
    rng = np.random.default_rng(7)
    returns = rng.standard_normal((1_000, 100)) * 0.02
    exposures = rng.uniform(-1e5, 1e5, 100)
    for method, reps in (("historical", 2_000), ("parametric", 200), ("monte_carlo", 20)):
        var_cvar(returns, exposures, method, 0.99, 1.0, 10_000, 0)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            var_cvar(returns, exposures, method, 0.99, 1.0, 10_000, 0)
            ts.append(time.perf_counter_ns() - t0)
        ms = np.array(ts) / 1e6
        extra = " (10,000 simulations)" if method == "monte_carlo" else ""
        print(f"VaR+CVaR {method}{extra}, 100 assets x 1,000 scenarios: median {np.median(ms):.3f} ms, "
              f"p99 {np.percentile(ms, 99):.3f} ms")

    eng, _ = build_engine()
    eng.set_scenarios(SYMBOLS, returns)
    ts = []
    for _ in range(500):
        t0 = time.perf_counter_ns()
        eng.var("historical")
        ts.append(time.perf_counter_ns() - t0)
    ms = np.array(ts) / 1e6
    print(f"engine.var('historical'): account + 10 strategies, 100 positions x 1,000 scenarios: "
          f"median {np.median(ms):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms")


if __name__ == "__main__":
    bench_check()
    bench_var()
