"""dbt build for real on the test PostgreSQL, then the marts against values computed by hand from the book
in conftest.py."""

from __future__ import annotations

import math
import os
from decimal import Decimal

import pytest

from tests.assets.warehouse.conftest import ACCOUNT, D1, D2, D3, DBT_VARS, rows

pytestmark = pytest.mark.stack

START = 100_000.0  # dbt var starting_equity


def _by(records, *keys):
    return {tuple(str(r[k]) for k in keys): r for r in records}


def test_dbt_build_ran_models_and_tests(warehouse_book):
    results = warehouse_book["results"]
    assert all(r["status"] in ("success", "pass") for r in results), \
        [(r["unique_id"], r["status"]) for r in results if r["status"] not in ("success", "pass")]
    ids = {r["unique_id"] for r in results}
    assert "model.tradeloop_warehouse.mart_strategy_performance" in ids
    assert "test.tradeloop_warehouse.assert_positions_equal_sum_of_fills" in ids
    assert any(i.startswith("test.tradeloop_warehouse.relationships_stg_trades_client_order_id") for i in ids)
    assert any(i.startswith("test.tradeloop_warehouse.accepted_values_stg_orders_status") for i in ids)


def test_marts_live_outside_public(engine, warehouse_book):
    schemas = {r["table_schema"] for r in rows(
        engine, "select table_schema from information_schema.tables where table_name like 'mart\\_%'")}
    assert schemas == {"analytics_marts"}


def test_daily_pnl_by_hand(engine, warehouse_book):
    got = _by(rows(engine, "select * from analytics_marts.mart_daily_pnl where account = :a", a=ACCOUNT),
              "strategy", "day")
    # wh-alpha: D1 cash -200-1+110-1 = -92, long 1 marked 108 -> 16; D2 cash +90-1-95 = -6, long 1 at 92
    # -> cumulative -98+92 = -6; D3 cash +315, short 2 at 100 -> 217-200 = 17
    expected = {
        ("wh-alpha", D1): (16, 16), ("wh-alpha", D2): (-22, -6), ("wh-alpha", D3): (23, 17),
        ("wh-beta", D2): (0, 0),  # no bars: marked at its fill price
        # wh-exec: paid 203 + 0.2 fees for 2, marked 108, 92, 100
        ("wh-exec", D1): (Decimal("12.8"), Decimal("12.8")), ("wh-exec", D2): (-32, Decimal("-19.2")),
        ("wh-exec", D3): (16, Decimal("-3.2")),
    }
    assert set(got) == set(expected)
    for key, (pnl, cumulative) in expected.items():
        assert got[key]["pnl"] == pnl, key
        assert got[key]["cumulative_pnl"] == cumulative, key
        assert got[key]["equity"] == Decimal(100_000) + Decimal(cumulative), key
    assert float(got[("wh-alpha", D2)]["daily_return"]) == pytest.approx(-22 / (START + 16))
    assert got[("wh-alpha", D3)]["round_trips_closed"] == 1 and got[("wh-alpha", D3)]["winning_round_trips"] == 1
    assert got[("wh-alpha", D1)]["fill_count"] == 2  # backtest fills are not in the paper P&L

    account = _by(rows(engine, "select * from analytics_marts.mart_account_daily_pnl where account = :a",
                       a=ACCOUNT), "day")
    assert [account[(d,)]["pnl"] for d in (D1, D2, D3)] == [Decimal("28.8"), -54, 39]


def test_symbol_daily_pnl_is_the_per_asset_part_of_daily_pnl(engine, warehouse_book):
    per_symbol = rows(engine, "select * from analytics_marts.mart_symbol_daily_pnl where account = :a", a=ACCOUNT)
    by_key = _by(per_symbol, "strategy", "symbol", "day")
    assert by_key[("wh-alpha", "WHBTC/USDT", D2)]["pnl"] == -22 and by_key[("wh-alpha", "WHBTC/USDT", D3)]["mark_price"] == 100
    assert by_key[("wh-beta", "WHETH/USDT", D2)]["mark_price"] == 10  # no bars: its fill price
    daily = _by(rows(engine, "select * from analytics_marts.mart_daily_pnl where account = :a", a=ACCOUNT),
                "strategy", "day")
    sums: dict = {}
    for r in per_symbol:
        sums[(r["strategy"], str(r["day"]))] = sums.get((r["strategy"], str(r["day"])), 0) + r["pnl"]
    assert sums == {k: r["pnl"] for k, r in daily.items()}


def test_round_trips_and_strategy_performance_by_hand(engine, warehouse_book):
    trips = rows(engine, "select * from analytics_marts.mart_round_trips where account = :a and strategy = 'wh-alpha' "
                         "order by round_trip_no", a=ACCOUNT)
    # buy 2, sell 1, sell 1 -> -3 after 3 fees; buy 1 @95, then the flip's closing part sells 1 @105 -> +10
    assert [(t["direction"], t["pnl"], t["is_win"]) for t in trips] == [("long", -3, False), ("long", 10, True)]

    perf = _by(rows(engine, "select * from analytics_marts.mart_strategy_performance where account = :a",
                    a=ACCOUNT), "strategy")
    alpha = perf[("wh-alpha",)]
    assert (alpha["trade_count"], alpha["fill_count"], alpha["win_rate"]) == (2, 5, Decimal("0.5"))
    assert alpha["pnl"] == 17 and str(alpha["as_of"]) == D3
    assert "sharpe" not in alpha  # one definition, in trading/backtest/metrics.py (the tear sheets use it)
    assert float(alpha["max_drawdown"]) == pytest.approx((START - 6) / (START + 16) - 1, rel=1e-9)
    assert float(alpha["total_return"]) == pytest.approx(17 / START, rel=1e-12)
    beta = perf[("wh-beta",)]
    assert (beta["trade_count"], beta["win_rate"]) == (0, None)


def test_tear_sheet_metrics_are_the_backtest_definition_on_the_marts_days():
    """Sharpe exists once (trading/backtest/metrics.py): the tear sheet applies it to the daily equity of
    wh-alpha above, and gets the hand-computed figure (sample stddev, sqrt(365.25) days a year)."""
    import pandas as pd

    from assets.reports import stats

    frame = pd.DataFrame({"equity": [START + 16, START - 6, START + 17], "pnl": [16.0, -22.0, 23.0],
                          "round_trips_closed": [0, 0, 2], "winning_round_trips": [0, 0, 1],
                          "fill_count": [2, 2, 1], "fees": [2.0, 1.0, 0.0]})
    returns = [16 / START, -22 / (START + 16), 23 / (START - 6)]
    mean, std = sum(returns) / 3, math.sqrt(sum((r - sum(returns) / 3) ** 2 for r in returns) / 2)
    got = stats(frame, START)
    assert got["sharpe"] == pytest.approx(mean / std * math.sqrt(365.25), rel=1e-9)
    assert got["max_drawdown"] == pytest.approx((START - 6) / (START + 16) - 1, rel=1e-9)
    assert got["total_return"] == pytest.approx(17 / START, rel=1e-12) and got["win_rate"] == 0.5
    assert stats(frame.head(1), START)["sharpe"] == 0.0  # one day: Sharpe undefined -> 0


def test_exposure_and_risk_history_by_hand(engine, warehouse_book):
    exposure = _by(rows(engine, "select * from analytics_marts.mart_exposure_daily where account = :a", a=ACCOUNT),
                   "strategy", "day")
    alpha = exposure[("wh-alpha", D3)]
    assert (alpha["quantity"], alpha["mark_price"], alpha["market_value"]) == (-2, 100, -200)
    assert (alpha["account_gross_exposure"], alpha["account_net_exposure"]) == (400, 0)  # short 200 + long 200
    assert alpha["current_position_quantity"] == -2

    risk = _by(rows(engine, "select * from analytics_marts.mart_risk_history where account = :a", a=ACCOUNT),
               "metric", "day")
    d1 = risk[("gross_exposure", D1)]
    assert (d1["last_value"], d1["min_value"], d1["max_value"], d1["samples"]) == (150, 100, 150, 2)


def test_execution_quality_by_hand(engine, warehouse_book):
    got = _by(rows(engine, "select * from analytics_marts.mart_execution_quality where account = :a", a=ACCOUNT),
              "parent_id")
    assert set(got) == {("twap:wh-parent-1",), ("wh-parent-2",)}
    parent = got[("twap:wh-parent-1",)]  # no parent_orders row: today's rules
    # arrival = close of the 09:59 bar (ended 10:00, before the first child at 10:00:30) = 100
    assert (parent["parent_id"], parent["algorithm"], parent["arrival_price"]) == ("twap:wh-parent-1", "twap", 100)
    assert parent["arrival_source"] == "bar_close" and parent["parent_quantity"] is None
    assert (parent["filled_quantity"], parent["avg_fill_price"], parent["shortfall"]) == (2, Decimal("101.5"), 3)
    assert float(parent["shortfall_bps"]) == pytest.approx(150)  # 3 / 200 arrival notional
    assert float(parent["cost_bps"]) == pytest.approx(160)  # + 0.2 fees
    assert float(parent["slippage_bps"]) == pytest.approx(150)  # fills 100 and 200 bps over 100


def test_execution_quality_takes_a_stored_parent_from_parent_orders(engine, warehouse_book):
    """A parent in parent_orders: its algorithm, decision time and arrival price are the OMS's (104), not the
    bar-close rule's (the 09:59 bar's close 100, the id's missing prefix -> the strategy)."""
    [parent] = rows(engine, "select * from analytics_marts.mart_execution_quality where parent_id = 'wh-parent-2'")
    assert (parent["algorithm"], parent["arrival_price"], parent["arrival_source"]) == ("vwap", 104, "parent_order")
    assert str(parent["parent_created_at"]) == f"{D1} 10:10:00+00:00"
    assert (parent["parent_quantity"], parent["parent_status"], parent["child_orders"]) == (3, "canceled", 2)
    # a sell: filled 2 for 103 + 102 = 205 against 2 x 104 = 208 at arrival -> shortfall -(205 - 208) = 3
    assert (parent["filled_quantity"], parent["avg_fill_price"], parent["shortfall"]) == (2, Decimal("102.5"), 3)
    assert float(parent["shortfall_bps"]) == pytest.approx(3 / 208 * 10_000)
    by_algo = _by(rows(engine, "select * from analytics_marts.mart_execution_quality_by_algorithm"), "algorithm", "mode")
    assert by_algo[("vwap", "backtest")]["arrival_notional"] == 208


def test_backtest_paper_parity_by_hand(engine, warehouse_book):
    got = _by(rows(engine, "select * from analytics_marts.mart_backtest_paper_parity where strategy = 'wh-alpha'"),
              "side", "bar_ts")
    key = lambda side, ts: (side, f"{ts}+00:00")  # noqa: E731
    first = got[key("buy", f"{D1} 10:00:00")]
    assert first["match_status"] == "matched"
    assert (first["price_diff"], first["quantity_diff"]) == (Decimal("0.5"), 0)
    assert float(first["price_diff_bps"]) == pytest.approx(0.5 / 99.5 * 10_000)
    assert got[key("sell", f"{D1} 12:00:00")]["price_diff"] == 0
    assert got[key("sell", f"{D2} 10:00:00")]["quantity_diff"] == Decimal("-0.5")
    assert got[key("buy", f"{D2} 11:00:00")]["match_status"] == "paper_only"
    assert got[key("sell", f"{D3} 10:00:00")]["match_status"] == "paper_only"
    assert got[key("buy", f"{D3} 09:00:00")]["match_status"] == "backtest_only"
    assert len(got) == 6


def test_position_that_is_not_the_sum_of_fills_fails_the_custom_test(engine, pg_url, warehouse_book):
    import sqlalchemy as sa

    from assets.warehouse import run_dbt

    select = ["test", "--select", "assert_positions_equal_sum_of_fills", "--vars", DBT_VARS,
              "--target-path", f"target/test-broken-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"]
    with engine.begin() as conn:
        conn.execute(sa.text("update positions set quantity = -1 where account = :a and strategy = 'wh-alpha'"),
                     {"a": ACCOUNT})
    try:
        broken = run_dbt(select, pg_url)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("update positions set quantity = -2 where account = :a and strategy = 'wh-alpha'"),
                         {"a": ACCOUNT})
    assert broken.returncode != 0
    assert "assert_positions_equal_sum_of_fills" in broken.stdout and "Got 1 result" in broken.stdout
