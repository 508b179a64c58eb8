"""Execution-quality marts on a warehouse with a long bar history: the dbt build of mart_execution_quality (and
what it reads) for one account, with and without the (symbol, interval, ts) index on market_data_clean.

The mart looks up, per child order and per parent, the close of the last bar of the symbol that ended before
the decision (any exchange).  The primary key starts with the exchange, so without the index each look-up
reads every bar of the table.  Starts its own PostgreSQL with the project's stack code, migrates it, writes
--bars one-minute bars per symbol (3 symbols) under an exchange no order uses, trades ~90 simulated minutes
with the paper Trader working TWAP parents (the orders, fills and parents the mart reads), then times the build.

    .venv/bin/python benchmarks/bench_execution_mart.py [--bars 300000] [--without-index]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.settings import Settings  # noqa: E402
from deploy.stack import postgres  # noqa: E402
from deploy.stack.process import free_port, stop  # noqa: E402
from storage import migrations  # noqa: E402

ACCOUNT = "bench-eq"


def bars(engine: sa.Engine, n: int) -> float:
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            SELECT 'bulk', s, '1m', now() - interval '400 days' + g * interval '1 minute', 1, 1, 1, 1, 1, 'bench'
            FROM generate_series(1, :n) g, unnest(array['BTC/USDT', 'ETH/USDT', 'SOL/USDT']) s"""), {"n": n})
    return time.perf_counter() - t0


def trade(engine: sa.Engine, minutes: int = 90) -> int:
    """The paper Trader works orders above its participation limit as TWAP parents; everything is stored."""
    from storage.stream import write_batch
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.oms.router import Router, RouterConfig
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    inst = {i.symbol: i for i in sim.instruments()}
    trader = Trader(ACCOUNT, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(1_000_000),
                    limits=RiskLimits(), instruments=inst,
                    router=Router(RouterConfig(participation=0.02, volume_window_s=300, slice_s=60),
                                  {s: i.lot_size for s, i in inst.items()}))

    def store() -> None:
        b = trader.drain()
        with engine.begin() as conn:
            write_batch(conn, mode="paper", account=b.account, bars=b.bars, orders=b.orders, events=b.events,
                        fills=b.fills, positions=b.positions, signals=b.signals, parents=b.parents)
        trader.release()

    start = sim.config.origin_ns
    for i, tick in enumerate(sim.events(start, start + minutes * 60_000_000_000, kinds=("tick",))):
        trader.on_tick(tick)
        if i % 500 == 499:
            store()
    store()
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM orders WHERE account = :a"), {"a": ACCOUNT}).scalar()


def build(url: str) -> float:
    from assets.warehouse import run_dbt

    t0 = time.perf_counter()
    done = run_dbt(["build", "--select", "+mart_execution_quality_by_algorithm", "--indirect-selection", "cautious",
                    "--vars", json.dumps({"accounts": [ACCOUNT]}), "--target-path", "target/bench-eq"], url,
                   timeout=3600, env={"DBT_PG_SCHEMA": "bench_eq"})
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"dbt build failed:\n{done.stdout[-4000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=300_000, help="one-minute bars per symbol (3 symbols)")
    ap.add_argument("--without-index", action="store_true", help="drop market_data_clean_symbol_ts first")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-eq-"))
    settings = Settings(_env_file=None, home=home, database_url=None, pg_port=free_port())
    record = postgres.start(settings, settings.pg_port)
    try:
        url = postgres.url(settings, settings.pg_port)
        migrations.upgrade(url)
        engine = sa.create_engine(url)
        if args.without_index:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP INDEX market_data_clean_symbol_ts"))
        print(f"bars: {3 * args.bars:,} in {bars(engine, args.bars):.1f} s")
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE market_data_clean"))
        print(f"orders stored by the Trader: {trade(engine)}")
        index = "without" if args.without_index else "with"
        print(f"dbt build of the execution marts ({index} the (symbol, interval, ts) index): {build(url):.1f} s")
        engine.dispose()
    finally:
        stop(record, settings.run_dir, sig=signal.SIGINT)


if __name__ == "__main__":
    main()
