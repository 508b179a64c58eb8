"""Portfolio optimisation as a Dagster asset: daily target weights from the clean market data.

`target_weights` is partitioned by day (like the market data's date dimension): partition D uses the
daily closes of the `lookback_days` up to and including D, so every day's decision can be recomputed
(backfilled) from the data as it was, and the rows for (portfolio, D) are replaced idempotently.
Turnover, minimum-trade and cost terms are measured against the portfolio's latest earlier weights.
"""

import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Optional

import dagster as dg

from assets.partitions import DAILY
from assets.resources import PostgresResource
from deploy.settings import get_settings

PORTFOLIO_PARTITIONS = DAILY  # by UTC day, from the settings when the code location loads (assets/partitions.py)
TOLERANCE = 1e-6  # of the asset check: solver tolerance is ~1e-8, stored weights are exact decimals


class ViewConfig(dg.Config):
    asset: str
    q: float
    """Expected (annualised) return of `asset`, or its out-performance of `versus`."""
    confidence: float = 0.5
    versus: Optional[str] = None


class TargetWeightsConfig(dg.Config):
    portfolio: str = "main"
    exchange: str = "sim"
    symbols: list[str] = []
    """Empty: the settings' symbols."""
    model: str = "min_variance"
    """One of trading.portfolio.allocation.ALL_MODELS: min_variance, max_sharpe, mean_variance, target_return,
    target_risk, risk_parity, black_litterman, kelly."""
    estimator: str = "ledoit_wolf"
    """Covariance: sample, ewma or ledoit_wolf."""
    ewma_halflife_days: float = 30.0
    lookback_days: int = 90
    min_days: int = 10
    """Fewer daily closes than this in the window is an error, not a noisy answer."""
    periods_per_year: int = 365
    """Crypto trades every day."""
    long_only: bool = True
    budget: float = 1.0
    min_weight: Optional[float] = None
    max_weight: Optional[float] = None
    gross_leverage: Optional[float] = None
    sector_map: dict[str, str] = {}
    sector_caps: dict[str, float] = {}
    turnover_limit: Optional[float] = None
    min_trade: float = 0.0
    risk_aversion: float = 2.5
    target: Optional[float] = None
    """Annualised return (target_return) or volatility (target_risk)."""
    risk_free: float = 0.0
    views: list[ViewConfig] = []
    tau: float = 0.05
    kelly_fraction: float = 0.5
    leverage_cap: Optional[float] = None


def _daily_closes(conn, exchange: str, symbols: list[str], first: date, last: date):
    """Last 1m close of each UTC day in [first, last] per symbol, as a (days x symbols) polars frame."""
    import polars as pl
    import sqlalchemy as sa

    rows = conn.execute(sa.text("""
        SELECT DISTINCT ON (symbol, day) symbol, day, close
        FROM (SELECT symbol, (ts AT TIME ZONE 'UTC')::date AS day, ts, close FROM market_data_clean
              WHERE exchange = :exchange AND interval = '1m' AND symbol = ANY(:symbols)
                AND ts >= :start AND ts < :end) bars
        ORDER BY symbol, day, ts DESC
    """), {"exchange": exchange, "symbols": symbols,
           "start": datetime.combine(first, datetime.min.time(), timezone.utc),
           "end": datetime.combine(last + timedelta(days=1), datetime.min.time(), timezone.utc)}).all()
    frame = pl.DataFrame([(s, d, float(c)) for s, d, c in rows], schema={"symbol": pl.String, "day": pl.Date,
                                                                          "close": pl.Float64}, orient="row")
    if frame.height == 0:
        return frame
    return frame.pivot(on="symbol", index="day", values="close").sort("day")


def _previous_weights(conn, portfolio: str, as_of: date) -> dict[str, float]:
    import sqlalchemy as sa

    rows = conn.execute(sa.text("""
        SELECT symbol, weight FROM target_weights
        WHERE portfolio = :p AND as_of = (SELECT max(as_of) FROM target_weights WHERE portfolio = :p AND as_of < :d)
    """), {"p": portfolio, "d": as_of}).all()
    return {s: float(w) for s, w in rows}


def allocation_spec(cfg: TargetWeightsConfig):
    """The asset's config as the domain's AllocationSpec (trading/portfolio/allocation.py chooses the model)."""
    from trading.portfolio import Constraints, View
    from trading.portfolio.allocation import AllocationSpec

    cons = Constraints(long_only=cfg.long_only, budget=cfg.budget, lower=cfg.min_weight, upper=cfg.max_weight,
                       gross_leverage=cfg.gross_leverage, sector_map=dict(cfg.sector_map),
                       sector_caps=dict(cfg.sector_caps), turnover=cfg.turnover_limit, min_trade=cfg.min_trade)
    return AllocationSpec(model=cfg.model, estimator=cfg.estimator, ewma_halflife_days=cfg.ewma_halflife_days,
                          periods_per_year=cfg.periods_per_year, constraints=cons, risk_aversion=cfg.risk_aversion,
                          target=cfg.target, risk_free=cfg.risk_free,
                          views=tuple(View(v.asset, v.q, v.confidence, v.versus) for v in cfg.views), tau=cfg.tau,
                          kelly_fraction=cfg.kelly_fraction, leverage_cap=cfg.leverage_cap)


def solve_target_weights(cfg: TargetWeightsConfig, symbols: list[str], prices, current: dict[str, float]):
    """Optimise (pure, given the price matrix). Returns (Solution, mu, inputs dict)."""
    from trading.portfolio.allocation import allocate

    spec = allocation_spec(cfg)
    sol, mu = allocate(spec, symbols, prices, current)
    inputs = {"model": cfg.model, "estimator": cfg.estimator, "lookback_days": cfg.lookback_days,
              "days_used": int(prices.shape[0]), "periods_per_year": cfg.periods_per_year,
              "risk_aversion": cfg.risk_aversion, "target": cfg.target, "risk_free": cfg.risk_free,
              "constraints": spec.constraints.as_dict(), "current": current, "exchange": cfg.exchange,
              "views": [v.model_dump() for v in cfg.views], "tau": cfg.tau,
              "kelly_fraction": cfg.kelly_fraction, "leverage_cap": cfg.leverage_cap,
              "diagnostics": sol.diagnostics, "frozen": list(sol.frozen)}
    return sol, mu, inputs


def _store(conn, cfg: TargetWeightsConfig, as_of: date, sol, inputs: dict, run_id: str) -> None:
    """Replace the (portfolio, as_of) rows in the caller's transaction: a re-run changes nothing else."""
    import sqlalchemy as sa

    conn.execute(sa.text("DELETE FROM target_weights WHERE portfolio = :p AND as_of = :d"),
                 {"p": cfg.portfolio, "d": as_of})
    conn.execute(sa.text("""
        INSERT INTO target_weights (portfolio, as_of, symbol, weight, model, estimator, solver, solver_status,
                                    expected_return, expected_vol, solve_time_s, inputs, run_id)
        VALUES (:p, :d, :symbol, :weight, :model, :estimator, :solver, :status, :er, :ev, :t,
                CAST(:inputs AS jsonb), :run_id)
    """), [{"p": cfg.portfolio, "d": as_of, "symbol": s, "weight": Decimal(repr(float(w))), "model": cfg.model,
            "estimator": cfg.estimator, "solver": sol.solver, "status": sol.status,
            "er": None if math.isnan(sol.expected_return) else sol.expected_return, "ev": sol.expected_vol,
            "t": sol.solve_time_s, "inputs": json.dumps(inputs, default=str), "run_id": run_id}
           for s, w in zip(sol.symbols, sol.weights)])


def check_weights(weights: dict[str, float], cfg: TargetWeightsConfig) -> list[str]:
    """Problems with stored weights against the constraints the configured model was solved under."""
    return allocation_spec(cfg).solved_constraints().violations(weights, TOLERANCE)


@dg.asset(
    partitions_def=PORTFOLIO_PARTITIONS,
    group_name="portfolio",
    kinds={"postgres", "cvxpy"},
    check_specs=[dg.AssetCheckSpec("weights_valid", asset="target_weights", blocking=True,
                                   description="stored weights sum to the budget and respect bounds, "
                                               "sector caps and leverage")],
    description="Daily target weights (table target_weights) from the clean market data's daily closes: "
                "covariance estimate, configured model and constraints, solver status and inputs.",
)
def target_weights(context: dg.AssetExecutionContext, config: TargetWeightsConfig, db: PostgresResource):
    import numpy as np
    import sqlalchemy as sa

    from trading.portfolio import InsufficientDataError

    as_of = date.fromisoformat(context.partition_key)
    symbols = list(config.symbols) or list(get_settings().symbols)
    first = as_of - timedelta(days=config.lookback_days - 1)
    with db.begin() as conn:
        closes = _daily_closes(conn, config.exchange, symbols, first, as_of)
        current = _previous_weights(conn, config.portfolio, as_of)
    missing = [s for s in symbols if s not in closes.columns]
    if missing:
        raise InsufficientDataError(f"no clean 1m bars on {config.exchange} for {missing} between {first} and {as_of}")
    prices = closes.select(symbols).to_numpy()
    gaps = {s: [str(d) for d, v in zip(closes["day"], closes[s]) if v is None] for s in symbols}
    gaps = {s: d for s, d in gaps.items() if d}
    if gaps:
        raise InsufficientDataError(f"days without a close (no bars) in the window: {gaps}")
    if prices.shape[0] < config.min_days:
        raise InsufficientDataError(f"{prices.shape[0]} daily closes between {first} and {as_of}, "
                                    f"need at least min_days={config.min_days}")
    outside = sorted(s for s, w in current.items() if s not in symbols and w != 0)
    if outside:  # the universe changed: those weights go to zero today, outside the optimiser's turnover
        context.log.warning(f"previous weights of {config.portfolio} hold symbols outside the universe: {outside}")
    current = {s: w for s, w in current.items() if s in symbols}
    sol, mu, inputs = solve_target_weights(config, symbols, prices, current)
    inputs.update({"as_of": str(as_of), "first_day": str(closes["day"][0]), "symbols": symbols})
    with db.begin() as conn:
        _store(conn, config, as_of, sol, inputs, context.run.run_id)
        stored = dict(conn.execute(sa.text("SELECT symbol, weight FROM target_weights "
                                           "WHERE portfolio = :p AND as_of = :d"),
                                   {"p": config.portfolio, "d": as_of}).all())
    stored = {s: float(w) for s, w in stored.items()}
    table = "| symbol | weight | expected return |\n|---|---:|---:|\n" + "\n".join(
        f"| {s} | {w:.4f} | {m:.4f} |" for s, w, m in zip(sol.symbols, sol.weights, mu))
    yield dg.MaterializeResult(metadata={
        "weights": dg.MetadataValue.md(table),
        "expected_return": sol.expected_return, "expected_vol": sol.expected_vol,
        "solver": sol.solver, "solver_status": sol.status, "solve_time_s": sol.solve_time_s,
        "days_used": int(prices.shape[0]), "turnover": float(np.abs(sol.weights - np.array(
            [current.get(s, 0.0) for s in symbols])).sum()),
        "portfolio": config.portfolio, "model": config.model, "estimator": config.estimator,
    })
    problems = check_weights(stored, config)
    yield dg.AssetCheckResult(check_name="weights_valid", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"problems": dg.MetadataValue.json(problems),
                                        "sum": sum(stored.values()), "rows": len(stored)})
