"""Portfolio optimisation as a Dagster asset: daily target weights from the clean market data.

`target_weights` is partitioned by day (like the market data's date dimension): partition D uses the
daily closes of the `lookback_days` up to and including D, so every day's decision can be recomputed
(backfilled) from the data as it was, and the rows for (portfolio, D) are replaced idempotently.
Turnover, minimum-trade and cost terms are measured against the portfolio's latest earlier weights.
"""

from datetime import date, timedelta
from typing import Optional

import dagster as dg

from deploy.settings import get_settings
from orchestration.resources import PostgresResource
from storage.market_data import daily_closes
from storage.target_weights import replace_weights, weights_as_of, weights_for_trading_day

_settings = get_settings()

PORTFOLIO_PARTITIONS = dg.DailyPartitionsDefinition(start_date=_settings.history_start, timezone="UTC")
EXTRA_MODELS = ("risk_parity", "black_litterman", "kelly")
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
    """min_variance, max_sharpe, mean_variance, target_return, target_risk, risk_parity, black_litterman, kelly."""
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


def _constraints(cfg: TargetWeightsConfig):
    from trading.portfolio import Constraints

    return Constraints(long_only=cfg.long_only, budget=cfg.budget, lower=cfg.min_weight, upper=cfg.max_weight,
                       gross_leverage=cfg.gross_leverage, sector_map=dict(cfg.sector_map),
                       sector_caps=dict(cfg.sector_caps), turnover=cfg.turnover_limit, min_trade=cfg.min_trade)


def solve_target_weights(cfg: TargetWeightsConfig, symbols: list[str], prices, current: dict[str, float]):
    """Estimate and optimise (pure, given the price matrix). Returns (Solution, mu, inputs dict)."""
    import numpy as np

    from trading.portfolio import (MODELS, Constraints, ModelError, View, black_litterman, estimate_cov, kelly,
                                   optimize, returns_from_prices, risk_parity)

    returns = returns_from_prices(prices, symbols)
    cov = estimate_cov(returns, cfg.estimator, cfg.ewma_halflife_days) * cfg.periods_per_year
    mu = returns.mean(axis=0) * cfg.periods_per_year
    cons = _constraints(cfg)
    kw = dict(constraints=cons, current=current)
    if cfg.model in MODELS:
        sol = optimize(cfg.model, symbols, cov, mu, risk_aversion=cfg.risk_aversion, target=cfg.target,
                       risk_free=cfg.risk_free, **kw)
    elif cfg.model == "black_litterman":
        views = [View(v.asset, v.q, v.confidence, v.versus) for v in cfg.views]
        mu, cov_bl, _ = black_litterman(symbols, cov, views, risk_aversion=cfg.risk_aversion, tau=cfg.tau)
        sol = optimize("mean_variance", symbols, cov_bl, mu, risk_aversion=cfg.risk_aversion, **kw)
    elif cfg.model == "kelly":
        # Kelly sizes the net exposure itself: the budget does not apply, every other constraint does
        free = Constraints(**{**cons.as_dict(), "budget": None})
        sol = kelly(symbols, cov, mu, fraction=cfg.kelly_fraction, leverage_cap=cfg.leverage_cap,
                    risk_free=cfg.risk_free, constraints=free)
    elif cfg.model == "risk_parity":
        ignored = [k for k in ("min_weight", "max_weight", "gross_leverage", "turnover_limit") if getattr(cfg, k) is not None]
        ignored += [k for k in ("sector_caps",) if getattr(cfg, k)] + (["min_trade"] if cfg.min_trade else [])
        if ignored or not cfg.long_only:
            raise ModelError(f"risk_parity is long-only and takes no other constraints; remove {ignored or ['long_only']}")
        sol = risk_parity(symbols, cov, budget=cfg.budget)
        sol = type(sol)(**{**sol.__dict__, "expected_return": float(mu @ sol.weights)})
    else:
        raise ModelError(f"unknown model {cfg.model!r}; use one of {MODELS + EXTRA_MODELS}")
    inputs = {"model": cfg.model, "estimator": cfg.estimator, "lookback_days": cfg.lookback_days,
              "days_used": int(prices.shape[0]), "periods_per_year": cfg.periods_per_year,
              "risk_aversion": cfg.risk_aversion, "target": cfg.target, "risk_free": cfg.risk_free,
              "constraints": cons.as_dict(), "current": current, "exchange": cfg.exchange,
              "views": [v.model_dump() for v in cfg.views], "tau": cfg.tau,
              "kelly_fraction": cfg.kelly_fraction, "leverage_cap": cfg.leverage_cap,
              "diagnostics": sol.diagnostics, "frozen": list(sol.frozen)}
    return sol, np.asarray(mu), inputs


def check_weights(weights: dict[str, float], cfg: TargetWeightsConfig) -> list[str]:
    """Problems with stored weights against the configured budget, bounds, sector caps and leverage."""
    from trading.portfolio import Constraints

    cons = _constraints(cfg)
    if cfg.model == "kelly":  # Kelly sizes the net exposure itself, under its leverage cap (as solved)
        cons = Constraints(**{**cons.as_dict(), "budget": None, "gross_leverage": cfg.leverage_cap})
    return cons.violations(weights, TOLERANCE)


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

    from trading.portfolio import InsufficientDataError

    as_of = date.fromisoformat(context.partition_key)
    symbols = list(config.symbols) or list(get_settings().symbols)
    first = as_of - timedelta(days=config.lookback_days - 1)
    with db.begin() as conn:
        closes = daily_closes(conn, config.exchange, symbols, first, as_of)
        # what was held going into as_of: the weights valid for trading that day
        current = {r.symbol: float(r.weight) for r in weights_for_trading_day(conn, config.portfolio, as_of)}
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
        replace_weights(conn, config.portfolio, as_of, sol.symbols, sol.weights, model=config.model,
                        estimator=config.estimator, solver=sol.solver, solver_status=sol.status,
                        expected_return=sol.expected_return, expected_vol=sol.expected_vol,
                        solve_time_s=sol.solve_time_s, inputs=inputs, run_id=context.run.run_id)
        stored = weights_as_of(conn, config.portfolio, as_of)
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


target_weights_job = dg.define_asset_job("target_weights_job", selection=[target_weights])  # daily, from the asset
# after each UTC day closes (and after the day's market data is in): that day's partition
target_weights_schedule = dg.build_schedule_from_partitioned_job(target_weights_job, hour_of_day=0, minute_of_hour=30)

ASSETS = [target_weights]
ASSET_CHECKS: list = []  # weights_valid is declared on the asset (check_specs), so it runs with each partition
JOBS = [target_weights_job]
SCHEDULES = [target_weights_schedule]
