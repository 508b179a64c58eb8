"""Shared fixtures of the warehouse tests: a small, hand-checkable book for account 'test-wh' in the real
test PostgreSQL, and one real `dbt build` over it (restricted to that account, so other tests' rows in
the same database never affect these results)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

ACCOUNT = "test-wh"
DBT_VARS = json.dumps({"accounts": [ACCOUNT]})
# dbt_project/target is shared by every pytest-xdist worker: each builds into its own folder
BUILD_TARGET = f"target/test-build-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"

# Days of the book (UTC). Marks are the last 1m bar of each day; 09:59 on D1 prices the algorithm's arrival.
D1, D2, D3 = "2026-11-02", "2026-11-03", "2026-11-04"
# Symbols of this test only: marks and arrival prices are per symbol, and other tests write BTC/USDT bars.

BARS = [  # (ts, close) of WHBTC/USDT on exchange 'sim-wh'; WHETH/USDT has no bars (marked at its last fill)
    (f"{D1} 09:59", 100), (f"{D1} 23:59", 108), (f"{D2} 23:59", 92), (f"{D3} 23:59", 100),
]

# (fill_id, client_order_id, strategy, symbol, side, price, quantity, fee, ts, mode)
FILLS = [
    # wh-alpha, paper: round trip 1 = buy 2 @100, sell 1 @110, sell 1 @90 -> -200+110+90-3 fees = -3 (loss)
    ("f1", "o1", "wh-alpha", "WHBTC/USDT", "buy", 100, 2, 1, f"{D1} 10:00:20", "paper"),
    ("f2", "o2", "wh-alpha", "WHBTC/USDT", "sell", 110, 1, 1, f"{D1} 12:00:10", "paper"),
    ("f3", "o3", "wh-alpha", "WHBTC/USDT", "sell", 90, 1, 1, f"{D2} 10:00:05", "paper"),
    # round trip 2 = buy 1 @95, then a flip: sell 3 @105 closes it (+10, a win) and opens a short of 2
    ("f4", "o4", "wh-alpha", "WHBTC/USDT", "buy", 95, 1, 0, f"{D2} 11:00:00", "paper"),
    ("f5", "o5", "wh-alpha", "WHBTC/USDT", "sell", 105, 3, 0, f"{D3} 10:00:00", "paper"),
    # wh-beta: one ETH buy, no bars for WHETH -> marked at the fill price: P&L 0
    ("f6", "o6", "wh-beta", "WHETH/USDT", "buy", 10, 1, 0, f"{D2} 08:00:00", "paper"),
    # wh-exec: children of a TWAP parent; arrival = close of the 09:59 bar (ended 10:00) = 100
    ("f7", "c1", "wh-exec", "WHBTC/USDT", "buy", 101, 1, 0.1, f"{D1} 10:00:40", "paper"),
    ("f8", "c2", "wh-exec", "WHBTC/USDT", "buy", 102, 1, 0.1, f"{D1} 10:05:10", "paper"),
    # wh-alpha backtest: the simulated twin of f1/f2/f3 plus one fill paper never made
    ("b1", "bo1", "wh-alpha", "WHBTC/USDT", "buy", 99.5, 2, 0, f"{D1} 10:00:00", "backtest"),
    ("b2", "bo2", "wh-alpha", "WHBTC/USDT", "sell", 110, 1, 0, f"{D1} 12:00:00", "backtest"),
    ("b3", "bo3", "wh-alpha", "WHBTC/USDT", "sell", 90, 1.5, 0, f"{D2} 10:00:00", "backtest"),
    ("b4", "bo4", "wh-alpha", "WHBTC/USDT", "buy", 100, 1, 0, f"{D3} 09:00:00", "backtest"),
    # wh-exec: children of a parent the OMS recorded in parent_orders (PARENTS): its arrival is the stored
    # decision price 104, not the 09:59 bar's close 100 (backtest mode keeps them out of the P&L marts)
    ("f9", "c3", "wh-exec", "WHBTC/USDT", "sell", 103, 1, 0, f"{D1} 10:10:10", "backtest"),
    ("f10", "c4", "wh-exec", "WHBTC/USDT", "sell", 102, 1, 0, f"{D1} 10:15:05", "backtest"),
]

CHILD_CREATED = {"c1": f"{D1} 10:00:30", "c2": f"{D1} 10:05:00", "c3": f"{D1} 10:10:05", "c4": f"{D1} 10:15:00"}
CHILD_PARENT = {"c1": "twap:wh-parent-1", "c2": "twap:wh-parent-1", "c3": "wh-parent-2", "c4": "wh-parent-2"}

# (parent_id, strategy, symbol, side, algorithm, quantity, arrival_price, status, filled, mode, created_at)
PARENTS = [("wh-parent-2", "wh-exec", "WHBTC/USDT", "sell", "vwap", 3, 104, "canceled", 2, "backtest",
            f"{D1} 10:10:00")]

POSITIONS = [("wh-alpha", "WHBTC/USDT", -2), ("wh-beta", "WHETH/USDT", 1), ("wh-exec", "WHBTC/USDT", 2)]

RISK = [  # (ts, metric, value) of scope 'account'
    (f"{D1} 12:00", "gross_exposure", 100), (f"{D1} 18:00", "gross_exposure", 150),
    (f"{D2} 12:00", "gross_exposure", 90),
]


def _ts(text: str) -> str:
    return f"{text}+00"


def insert_book(engine: sa.Engine) -> None:
    """The book above, idempotently (delete this account's rows first), in one transaction."""
    with engine.begin() as conn:
        for table in ("trades", "orders", "parent_orders", "positions", "risk_metrics"):
            conn.execute(sa.text(f"delete from {table} where account = :a"), {"a": ACCOUNT})
        conn.execute(sa.text("delete from market_data_clean where exchange = 'sim-wh'"))
        conn.execute(sa.text(
            "insert into market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id) "
            "values ('sim-wh', 'WHBTC/USDT', '1m', :ts, :c, :c, :c, :c, 1, :rid)"),
            [{"ts": _ts(ts), "c": close, "rid": f"wh-bar-{i}"} for i, (ts, close) in enumerate(BARS)])
        for fid, oid, strategy, symbol, side, price, qty, fee, ts, mode in FILLS:
            parent = CHILD_PARENT.get(oid)
            created = _ts(CHILD_CREATED.get(oid, ts))
            conn.execute(sa.text(
                "insert into orders (client_order_id, account, strategy, exchange, symbol, side, order_type, "
                "quantity, time_in_force, status, filled_quantity, parent_id, mode, created_at, updated_at) "
                "values (:oid, :a, :s, 'sim-wh', :sym, :side, 'market', :q, 'ioc', 'filled', :q, :parent, :mode, "
                ":created, :ts)"),
                {"oid": oid, "a": ACCOUNT, "s": strategy, "sym": symbol, "side": side, "q": qty,
                 "parent": parent, "mode": mode, "created": created, "ts": _ts(ts)})
            conn.execute(sa.text(
                "insert into trades (fill_id, client_order_id, account, strategy, exchange, symbol, side, price, "
                "quantity, fee, fee_currency, liquidity, ts, mode) values (:fid, :oid, :a, :s, 'sim-wh', :sym, "
                ":side, :p, :q, :fee, 'USDT', 'taker', :ts, :mode)"),
                {"fid": f"wh-{fid}", "oid": oid, "a": ACCOUNT, "s": strategy, "sym": symbol, "side": side,
                 "p": price, "q": qty, "fee": fee, "ts": _ts(ts), "mode": mode})
        conn.execute(sa.text(
            "insert into parent_orders (parent_id, account, strategy, exchange, symbol, side, algorithm, quantity, "
            "arrival_price, params, status, filled_quantity, mode, created_at, updated_at) values (:pid, :a, :s, "
            "'sim-wh', :sym, :side, :algo, :q, :arrival, '{}', :status, :filled, :mode, :created, :created)"),
            [{"pid": pid, "a": ACCOUNT, "s": s, "sym": sym, "side": side, "algo": algo, "q": q, "arrival": arrival,
              "status": status, "filled": filled, "mode": mode, "created": _ts(created)}
             for pid, s, sym, side, algo, q, arrival, status, filled, mode, created in PARENTS])
        conn.execute(sa.text(
            "insert into positions (account, strategy, symbol, quantity, updated_at) values (:a, :s, :sym, :q, now())"),
            [{"a": ACCOUNT, "s": s, "sym": sym, "q": q} for s, sym, q in POSITIONS])
        conn.execute(sa.text(
            "insert into risk_metrics (ts, account, scope, metric, value) values (:ts, :a, 'account', :m, :v)"),
            [{"ts": _ts(ts), "a": ACCOUNT, "m": m, "v": v} for ts, m, v in RISK])


@pytest.fixture(scope="session")
def warehouse_book(engine, pg_url):
    """The book inserted and the warehouse built once with the real dbt CLI; yields the build's results."""
    from assets.warehouse import DBT_PROJECT_DIR, run_dbt

    insert_book(engine)
    started = time.monotonic()
    done = run_dbt(["build", "--vars", DBT_VARS, "--target-path", BUILD_TARGET], pg_url)
    seconds = time.monotonic() - started
    results = json.loads((Path(DBT_PROJECT_DIR) / BUILD_TARGET / "run_results.json").read_text())
    assert done.returncode == 0, f"dbt build failed in {seconds:.1f}s:\n{done.stdout[-6000:]}"
    print(f"dbt build: {seconds:.1f}s")
    return {"results": results["results"], "seconds": seconds}


def rows(engine: sa.Engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
