"""The warehouse and the tear sheets through Dagster for real: dbt assets with their dbt tests as asset
checks, lineage from the platform's assets, and the report pages on disk."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from tests.assets.warehouse.conftest import ACCOUNT, D3

pytestmark = pytest.mark.stack


def test_lineage_maps_sources_to_platform_assets():
    from assets.warehouse import mart_key, warehouse_dbt_assets

    deps = warehouse_dbt_assets.asset_deps
    assert dg.AssetKey(["ohlcv_clean"]) in deps[dg.AssetKey(["staging", "stg_market_data_clean"])]
    assert dg.AssetKey(["platform", "trades"]) in deps[dg.AssetKey(["staging", "stg_trades"])]
    assert mart_key("mart_daily_pnl") in warehouse_dbt_assets.keys
    checks = {c.name for c in warehouse_dbt_assets.check_specs}
    assert "assert_positions_equal_sum_of_fills" in checks


def test_dbt_url_settings_parse_and_reject_bad_urls():
    from assets.warehouse import WarehouseError, dbt_env

    env = dbt_env("postgresql+psycopg://trader:s3cret@db.internal:6543/tradeloop")
    assert env == {"DBT_PG_HOST": "db.internal", "DBT_PG_PORT": "6543", "DBT_PG_USER": "trader",
                   "DBT_PG_PASSWORD": "s3cret", "DBT_PG_DBNAME": "tradeloop"}
    with pytest.raises(WarehouseError, match="needs PostgreSQL"):
        dbt_env("sqlite:///x.db")
    with pytest.raises(WarehouseError, match="names no database"):
        dbt_env("postgresql://u@h:5432")
    with pytest.raises(WarehouseError, match="not a database URL"):
        dbt_env("not a url")


def test_dbt_parse_needs_no_database(tmp_path):
    from assets.warehouse import run_dbt

    # a closed port: parse must not try to connect (fresh clones parse at definition load time)
    done = run_dbt(["parse", "--quiet", "--target-path", str(tmp_path)], "postgresql://nobody@127.0.0.1:9/none")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "manifest.json").exists()


@pytest.fixture(scope="module")
def materialized(pg_url, warehouse_book):
    from assets.resources import PostgresResource
    from assets.warehouse import dbt_resource, warehouse_dbt_assets

    return dg.materialize(
        [warehouse_dbt_assets],
        resources={"dbt": dbt_resource(), "db": PostgresResource(url=pg_url)},
        run_config={"ops": {"warehouse_dbt_assets": {"config": {"accounts": [ACCOUNT]}}}},
    )


def test_dbt_assets_materialize_with_passing_checks(materialized):
    from assets.warehouse import mart_key, warehouse_dbt_assets

    assert materialized.success
    done = {m.asset_key for m in materialized.get_asset_materialization_events()}
    assert done == set(warehouse_dbt_assets.keys)  # every model, marts included
    assert mart_key("mart_strategy_performance") in done
    evaluations = materialized.get_asset_check_evaluations()
    assert len(evaluations) == len(list(warehouse_dbt_assets.check_specs))
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    assert "assert_positions_equal_sum_of_fills" in {e.check_name for e in evaluations}


def _report(pg_url, **config):
    from assets.reports import tear_sheets
    from assets.resources import PostgresResource

    result = dg.materialize([tear_sheets], resources={"db": PostgresResource(url=pg_url)},
                            run_config={"ops": {"tear_sheets": {"config": config}}})
    assert result.success
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_tear_sheets_embed_plots_and_load_nothing_remote(pg_url, materialized):
    from pathlib import Path

    from deploy.settings import get_settings

    meta = _report(pg_url, as_of=D3, accounts=[ACCOUNT])
    index = Path(meta["report_path"].value)
    assert index == get_settings().site_dir / "reports" / D3 / "index.html"
    assert meta["report"].value == f"{get_settings().docs_url}/reports/{D3}/index.html"
    assert meta["strategies"].value == 3 and meta["no_trades_yet"].value is False
    pages = sorted(index.parent.glob("*.html"))
    assert {p.name for p in pages} == {"index.html", f"portfolio__{ACCOUNT}.html", f"{ACCOUNT}__wh-alpha.html",
                                       f"{ACCOUNT}__wh-beta.html", f"{ACCOUNT}__wh-exec.html"}
    for page in pages:
        text = page.read_text()
        assert not re.search(r"https?://", text), page.name
        if page.name != "index.html":
            assert text.count("src='data:image/png;base64,") == 6, page.name
    alpha = (index.parent / f"{ACCOUNT}__wh-alpha.html").read_text()
    assert "<th>P&L</th><td>17.00</td>" in alpha and "<th>Win rate</th><td>50.00%</td>" in alpha
    # attribution: per asset on a strategy's page; per strategy and asset on the portfolio's (P&L, its
    # contribution to the return on 100,000, its share); three days give two benchmark returns: no beta
    assert "<h2>Attribution</h2>" in alpha and "<td style='text-align:left'>WHBTC/USDT</td><td>17.00</td>" in alpha
    book = (index.parent / f"portfolio__{ACCOUNT}.html").read_text()
    assert ("<td style='text-align:left'>wh-alpha</td><td>17.00</td><td>0.02%</td><td>123.19%</td>" in book
            and "<td style='text-align:left'>wh-exec</td><td>-3.2000</td>" in book)
    assert "<td style='text-align:left'>WHBTC/USDT</td><td>13.80</td>" in book
    assert ("Benchmark: equal weight of WHBTC/USDT, WHETH/USDT. Beta and alpha n/a: beta needs at least 3 "
            "periods with both returns, got 2") in book
    assert meta["benchmark"].value == "equal_weight"
    assert len(list((index.parent / "img").glob("*.png"))) == 4 * 6
    assert "wh-alpha.html" in index.read_text()


def test_tear_sheets_without_trades_say_so(pg_url, materialized):
    from pathlib import Path

    meta = _report(pg_url, as_of="2026-10-01", accounts=["test-wh-nobody"])
    assert meta["no_trades_yet"].value is True
    text = Path(meta["report_path"].value).read_text()
    assert "No trades yet" in text and not re.search(r"https?://", text)


def test_report_rejects_a_bad_date(pg_url):
    from assets.reports import tear_sheets
    from assets.resources import PostgresResource

    with pytest.raises(dg.Failure, match="as_of must be a date"):
        dg.materialize([tear_sheets], resources={"db": PostgresResource(url=pg_url)},
                       run_config={"ops": {"tear_sheets": {"config": {"as_of": "yesterday"}}}})


def test_a_one_day_history_plots_visible_points_on_a_tight_axis():
    """The first day of paper trading: one point per series must show, on a range of days, not years."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    from assets.reports import _dated

    one = pd.DatetimeIndex(["2026-11-24"])
    fig, ax = plt.subplots()
    style = _dated(ax, one, fig)
    (line,) = ax.plot(one, [100_000.0], **style)
    lo, hi = (mdates.num2date(x).date().isoformat() for x in ax.get_xlim())
    assert line.get_marker() == "o" and (lo, hi) == ("2026-11-23", "2026-11-25")
    plt.close(fig)
    long = pd.date_range("2026-01-01", periods=60, freq="D")
    fig, ax = plt.subplots()
    assert _dated(ax, long, fig) == {}  # a long history: plain lines, matplotlib's own range
    plt.close(fig)
