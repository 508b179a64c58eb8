"""The optimiser's target weights, traded by the Rebalance strategy in the backtester over sim bars."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from trading.backtest.runner import BacktestConfig, run_backtest
from trading.backtest.data import REQUIRED, validate_bars
from trading.marketdata.sim import SimConfig, SimVenue
from trading.portfolio import Constraints, TargetWeights, estimate_cov, optimize, rebalance_weights, returns_from_prices
from trading.portfolio.errors import PortfolioError
from trading.strategies.rebalance import Rebalance

HOURS_PER_DAY = 24


@pytest.fixture(scope="module")
def sim_bars() -> pl.DataFrame:
    venue = SimVenue(SimConfig(seed=11))
    frame = venue.generate_bars(venue.config.origin_ns, 40 * HOURS_PER_DAY, "1h")
    return validate_bars(frame.rename({"ts": "timestamp"}).select(REQUIRED + ("symbol",)))


def closes_matrix(frame: pl.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    wide = frame.pivot(on="symbol", index="timestamp", values="close").sort("timestamp")
    symbols = sorted(c for c in wide.columns if c != "timestamp")
    return symbols, wide["timestamp"].to_numpy(), wide.select(symbols).to_numpy()


def target_record(symbols, prices, as_of: str) -> TargetWeights:
    cov = estimate_cov(returns_from_prices(prices, symbols), "ledoit_wolf") * 24 * 365
    cons = Constraints(upper=0.6, lower=0.1)
    sol = optimize("min_variance", symbols, cov, constraints=cons)
    return TargetWeights("bt", as_of, sol.as_dict(), "min_variance", "ledoit_wolf", sol.status, sol.solver,
                         sol.solve_time_s, sol.expected_return, sol.expected_vol, {"constraints": cons.as_dict()})


def test_static_optimiser_weights_are_traded(sim_bars):
    symbols, ts, prices = closes_matrix(sim_bars)
    train = 20 * HOURS_PER_DAY
    record = target_record(symbols, prices[:train], "day20")
    weights = rebalance_weights(record)
    assert sum(weights.values()) == pytest.approx(1) and min(weights.values()) >= 0.1 - 1e-7
    test = sim_bars.filter(pl.col("timestamp") >= int(ts[train]))
    res = run_backtest(test, Rebalance(weights, every=HOURS_PER_DAY), BacktestConfig(cash=Decimal(100_000), fee_bps=1))
    pf = res.engine.portfolio
    equity = float(pf.equity())
    held = {s: float(pf.position(s).quantity * res.engine.last_price[s]) / equity for s in symbols}
    for s in symbols:  # drifted for at most a day since the last daily rebalance
        assert held[s] == pytest.approx(weights[s], abs=0.05), s
    assert {f.symbol for f in res.fills} == set(symbols)


def test_walk_forward_reoptimised_weights_are_traded(sim_bars):
    symbols, ts, prices = closes_matrix(sim_bars)
    records = []

    def weights(now: int, ctx) -> dict[str, float]:
        seen = prices[ts < now][-10 * HOURS_PER_DAY:]  # causal: only closes before the decision
        if len(seen) < 3 * HOURS_PER_DAY:
            return {}
        records.append(target_record(symbols, seen, str(now)))
        return rebalance_weights(records[-1])

    res = run_backtest(sim_bars, Rebalance(weights, every=5 * HOURS_PER_DAY), BacktestConfig(cash=Decimal(100_000)))
    assert len(records) == 7  # decisions on days 5, 10, ..., 35 (day 0 lacks history)
    assert len({tuple(sorted(r.weights.items())) for r in records}) > 1  # weights move with the window
    assert len({f.ts for f in res.fills}) >= 7 and res.metrics["final_equity"] > 0


def test_rebalance_weights_drops_dust_and_refuses_nan():
    rec = TargetWeights("p", "d", {"A": 0.7, "B": 0.3, "C": 1e-12}, "min_variance", "sample", "optimal")
    assert rebalance_weights(rec, min_weight=1e-9) == {"A": 0.7, "B": 0.3}
    with pytest.raises(PortfolioError, match="'A'"):
        rebalance_weights(TargetWeights("p", "d", {"A": float("nan")}, "m", "e", "optimal"))
    assert rec.id == TargetWeights("p", "d", {}, "x", "y", "z").id  # identity: portfolio and as_of
