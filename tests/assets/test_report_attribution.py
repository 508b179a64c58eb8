"""The tear sheet's attribution section on a book built with known numbers (beta 1.5 and 10 bp a day of
alpha against the equal-weight benchmark of its two symbols), written by the report code and looked at in
a real headless Chromium (the screenshot is left in test-artifacts/)."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from assets.reports import write_reports
from tests.browser import artefacts_dir, browser  # noqa: F401  (fixtures)

ACCOUNT, START, DAYS = "att", 100_000.0, 90
AS_OF = date(2026, 11, 28)


def book(beta: float = 1.5, alpha: float = 0.001, seed: int = 4):
    """(strategies, portfolios, symbols) frames shaped as the marts: two symbols, two strategies."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(end=pd.Timestamp(AS_OF), periods=DAYS + 1, freq="D")
    moves = rng.normal(0.001, 0.03, (DAYS, 2))
    marks = np.vstack([[60_000.0, 3_000.0], [60_000.0, 3_000.0] * np.cumprod(1 + moves, axis=0)])
    bench = moves.mean(axis=1)  # the equal-weight basket's return, day by day
    noise = rng.normal(0, 0.005, DAYS)
    noise -= bench * (np.mean(noise * (bench - bench.mean())) / np.var(bench))
    noise -= noise.mean()
    returns = alpha + beta * bench + noise
    equity = START * np.cumprod(1 + returns)
    pnl = np.diff(np.concatenate(([START], equity)))
    traded = days[1:]  # the book trades from the second day: every one of its days has a benchmark return

    def daily(frame_pnl, cum_start):
        cum = np.cumsum(frame_pnl)
        eq = cum_start + cum
        prev = np.concatenate(([cum_start], eq[:-1]))
        return {"day": traded, "pnl": frame_pnl, "equity": eq, "daily_return": frame_pnl / prev,
                "gross_exposure": np.full(DAYS, 1.5 * START), "net_exposure": np.full(DAYS, 1.5 * START),
                "round_trips_closed": np.zeros(DAYS, int), "winning_round_trips": np.zeros(DAYS, int),
                "fill_count": np.full(DAYS, 3), "fees": np.full(DAYS, 1.0)}

    portfolio = pd.DataFrame({"account": ACCOUNT, **daily(pnl, START)})
    split = {"target_rebalance": 0.7, "sma_cross": 0.3}
    strategies = pd.concat([pd.DataFrame({"account": ACCOUNT, "strategy": s, **daily(pnl * w, START)})
                            for s, w in split.items()], ignore_index=True)
    rows = []
    for s, w in split.items():
        for j, sym in enumerate(("BTC/USDT", "ETH/USDT")):
            share = 0.6 if j == 0 else 0.4
            rows.append(pd.DataFrame({"account": ACCOUNT, "strategy": s, "symbol": sym, "day": days,
                                      "pnl": np.concatenate(([0.0], pnl * w * share)), "mark_price": marks[:, j]}))
    return strategies, portfolio, pd.concat(rows, ignore_index=True), float(pnl.sum())


def test_the_portfolio_page_shows_beta_alpha_and_the_breakdowns(tmp_path):
    strategies, portfolio, symbols, total = book()
    index = write_reports(tmp_path, AS_OF, strategies, portfolio, START, symbols, "equal_weight")
    page = (index.parent / f"portfolio__{ACCOUNT}.html").read_text()
    assert "<th>Benchmark</th><td>equal weight of BTC/USDT, ETH/USDT</td>" in page
    assert "<th>Beta</th><td>1.500</td>" in page and "<th>Alpha (annualised)</th><td>36.50%</td>" in page
    assert "<th>Alpha per day</th><td>10.00 bp</td>" in page and f"<th>Days fitted</th><td>{DAYS}</td>" in page
    share = re.search(r"target_rebalance</td><td>[^<]+</td><td>[^<]+</td><td>([^<]+)</td>", page).group(1)
    assert share == "70.00%"
    btc = re.search(r"BTC/USDT</td><td>([^<]+)</td>", page).group(1)
    assert float(btc.replace(",", "")) == pytest.approx(0.6 * total, abs=0.01)
    assert page.count("src='data:image/png;base64,") == 7  # the six plots and book vs benchmark
    strategy_page = (index.parent / f"{ACCOUNT}__sma_cross.html").read_text()
    assert "<h3>By strategy</h3>" not in strategy_page and "<h3>By asset</h3>" in strategy_page
    # the sleeve makes 30% of the book's P&L on the same starting capital: 0.3 x 1.5 = 0.45, a little more
    # as the book's equity (which its P&L scales with) outgrows the sleeve's
    beta = float(re.search(r"<th>Beta</th><td>([^<]+)</td>", strategy_page).group(1))
    assert 0.45 < beta < 0.55


def test_one_symbol_as_benchmark_and_one_the_book_never_held(tmp_path):
    strategies, portfolio, symbols, _ = book()
    index = write_reports(tmp_path, AS_OF, strategies, portfolio, START, symbols, "BTC/USDT")
    page = (index.parent / f"portfolio__{ACCOUNT}.html").read_text()
    assert "<th>Benchmark</th><td>BTC/USDT</td>" in page
    assert "<th>Beta</th><td>1.500</td>" not in page  # the book was built on the basket, not on BTC alone
    index = write_reports(tmp_path, AS_OF, strategies, portfolio, START, symbols, "DOGE/USDT")
    page = (index.parent / f"portfolio__{ACCOUNT}.html").read_text()
    assert "n/a: no daily marks of DOGE/USDT in account att&#x27;s book (setting report_benchmark)" in page
    index = write_reports(tmp_path, AS_OF, strategies, portfolio, START, "warehouse mart mart_symbol_daily_pnl "
                          "does not exist: run the warehouse_build job first", "equal_weight")
    page = (index.parent / f"portfolio__{ACCOUNT}.html").read_text()
    assert "<h3>By strategy</h3>" in page and "n/a: warehouse mart mart_symbol_daily_pnl does not exist" in page


def test_a_person_sees_the_attribution(tmp_path, browser, artefacts_dir):  # noqa: F811
    strategies, portfolio, symbols, _ = book()
    index = write_reports(tmp_path, AS_OF, strategies, portfolio, START, symbols, "equal_weight")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto((index.parent / f"portfolio__{ACCOUNT}.html").as_uri(), wait_until="load")
    heading = page.get_by_role("heading", name="Against the market")
    assert heading.is_visible()
    widths = page.locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 7 and min(widths) > 100  # every plot decoded
    page.locator("h2", has_text="Attribution").scroll_into_view_if_needed()
    page.screenshot(path=str(artefacts_dir / "tear_sheet_portfolio.png"), full_page=True)
    page.close()
