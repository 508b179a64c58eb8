"""Portfolio optimisation as a Dagster asset: daily target weights from the clean market data.

`target_weights` is partitioned by day (like the market data's date dimension): partition D uses the
daily closes of the `lookback_days` up to and including D, so every day's decision can be recomputed
(backfilled) from the data as it was, and the rows for (portfolio, D) are replaced idempotently.
Turnover, minimum-trade and cost terms are measured against the portfolio's latest earlier weights (the
previous target: what the stream's target_rebalance slot was told to hold going into the day); the turnover
penalty and minimum trade default to the settings (portfolio_turnover_penalty, portfolio_min_trade).

`weights_fresh` (a check of its own, run hourly by the `weights_freshness` schedule) fails when the weights
that trade now are older than `weights_max_age_hours`, and writes one audit_log alert per portfolio, stale
as-of and day.
"""

import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Optional

import dagster as dg

from assets.partitions import DAILY
from assets.resources import MarketDataSource, PostgresResource
from deploy.settings import get_settings
from storage.audit import decision as record_decision
from storage.market_data import daily_closes
from storage.target_weights import replace_weights, weights_as_of, weights_for_trading_day

PORTFOLIO_PARTITIONS = DAILY  # by UTC day, from the settings when the code location loads (assets/partitions.py)
TOLERANCE = 1e-6  # of the asset check: solver tolerance is ~1e-8, stored weights are exact decimals
log = logging.getLogger(__name__)


class ViewConfig(dg.Config):
    asset: str
    q: float
    """Expected (annualised) return of `asset`, or its out-performance of `versus`."""
    confidence: float = 0.5
    versus: Optional[str] = None


class TargetWeightsConfig(dg.Config):
    portfolio: str = "main"
    exchange: str = ""
    """Whose clean bars price the portfolio. Empty: the market source's (TRADELOOP_MARKET_SOURCE)."""
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
    min_trade: Optional[float] = None
    """Weight changes smaller than this are not made. None: the setting portfolio_min_trade."""
    turnover_penalty: Optional[float] = None
    """Cost per unit of sum |w - w_previous| in the objective. None: the setting portfolio_turnover_penalty."""
    risk_aversion: float = 2.5
    target: Optional[float] = None
    """Annualised return (target_return) or volatility (target_risk)."""
    risk_free: float = 0.0
    views: list[ViewConfig] = []
    tau: float = 0.05
    kelly_fraction: float = 0.5
    leverage_cap: Optional[float] = None


def allocation_spec(cfg: TargetWeightsConfig):
    """The asset's config as the domain's AllocationSpec (trading/portfolio/allocation.py chooses the model)."""
    from trading.portfolio import Constraints, Costs, View
    from trading.portfolio.allocation import AllocationSpec

    min_trade, penalty = trading_costs(cfg)
    cons = Constraints(long_only=cfg.long_only, budget=cfg.budget, lower=cfg.min_weight, upper=cfg.max_weight,
                       gross_leverage=cfg.gross_leverage, sector_map=dict(cfg.sector_map),
                       sector_caps=dict(cfg.sector_caps), turnover=cfg.turnover_limit, min_trade=min_trade)
    return AllocationSpec(model=cfg.model, estimator=cfg.estimator, ewma_halflife_days=cfg.ewma_halflife_days,
                          periods_per_year=cfg.periods_per_year, constraints=cons, risk_aversion=cfg.risk_aversion,
                          target=cfg.target, risk_free=cfg.risk_free,
                          views=tuple(View(v.asset, v.q, v.confidence, v.versus) for v in cfg.views), tau=cfg.tau,
                          kelly_fraction=cfg.kelly_fraction, leverage_cap=cfg.leverage_cap, costs=Costs(fee=penalty))


def trading_costs(cfg: TargetWeightsConfig) -> tuple[float, float]:
    """(min_trade, turnover_penalty): the config's, or the settings' when the config leaves them unset."""
    settings = get_settings()
    min_trade = settings.portfolio_min_trade if cfg.min_trade is None else cfg.min_trade
    penalty = settings.portfolio_turnover_penalty if cfg.turnover_penalty is None else cfg.turnover_penalty
    return float(min_trade), float(penalty)


def solve_target_weights(cfg: TargetWeightsConfig, symbols: list[str], prices, current: dict[str, float]):
    """Optimise (pure, given the price matrix). Returns (Solution, mu, inputs dict)."""
    from trading.portfolio.allocation import allocate

    spec = allocation_spec(cfg)
    sol, mu = allocate(spec, symbols, prices, current)
    inputs = {"model": cfg.model, "estimator": cfg.estimator, "lookback_days": cfg.lookback_days,
              "days_used": int(prices.shape[0]), "periods_per_year": cfg.periods_per_year,
              "risk_aversion": cfg.risk_aversion, "target": cfg.target, "risk_free": cfg.risk_free,
              "constraints": spec.constraints.as_dict(), "current": current, "exchange": cfg.exchange,
              "turnover_penalty": float(spec.costs.fee),
              "views": [v.model_dump() for v in cfg.views], "tau": cfg.tau,
              "kelly_fraction": cfg.kelly_fraction, "leverage_cap": cfg.leverage_cap,
              "diagnostics": sol.diagnostics, "frozen": list(sol.frozen)}
    return sol, mu, inputs


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
def target_weights(context: dg.AssetExecutionContext, config: TargetWeightsConfig, db: PostgresResource,
                   market_source: MarketDataSource):
    import numpy as np

    from trading.portfolio import InsufficientDataError

    if not config.exchange:  # priced on the market the platform ingests (it was "sim" whatever the source)
        config = config.model_copy(update={"exchange": market_source.exchange_name()})
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
        record_decision(conn, "reweight", f"portfolio:{config.portfolio}",
                        f"{config.model} weights for {as_of}: " + ", ".join(
                            f"{s} {w:.3f}" for s, w in zip(sol.symbols, sol.weights)),
                        {"as_of": str(as_of), "weights": dict(zip(sol.symbols, map(float, sol.weights))),
                         "solver_status": sol.status, "dagster_run_id": context.run.run_id},
                        config.portfolio, str(as_of), context.run.run_id, actor="portfolio")
    table = "| symbol | weight | expected return |\n|---|---:|---:|\n" + "\n".join(
        f"| {s} | {w:.4f} | {m:.4f} |" for s, w, m in zip(sol.symbols, sol.weights, mu))
    yield dg.MaterializeResult(metadata={
        "weights": dg.MetadataValue.md(table),
        "expected_return": sol.expected_return, "expected_vol": sol.expected_vol,
        "solver": sol.solver, "solver_status": sol.status, "solve_time_s": sol.solve_time_s,
        "days_used": int(prices.shape[0]), "turnover": float(np.abs(sol.weights - np.array(
            [current.get(s, 0.0) for s in symbols])).sum()),
        "turnover_penalty": float(inputs["turnover_penalty"]), "min_trade": inputs["constraints"]["min_trade"],
        "frozen": dg.MetadataValue.json(list(sol.frozen)),
        "portfolio": config.portfolio, "model": config.model, "estimator": config.estimator,
    })
    problems = check_weights(stored, config)
    yield dg.AssetCheckResult(check_name="weights_valid", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"problems": dg.MetadataValue.json(problems),
                                        "sum": sum(stored.values()), "rows": len(stored)})


class WeightsFreshConfig(dg.Config):
    portfolio: str = "main"
    max_age_hours: Optional[float] = None
    """None: the setting weights_max_age_hours."""
    at: str = ""
    """ISO date-time (UTC) to judge the weights at; empty = now. For drills and an accelerated clock."""


def _judged_at(text: str) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise dg.Failure(description=f"weights_fresh: 'at' must be an ISO date-time, got {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def stale_alert(conn, verdict, at: datetime) -> bool:
    """One audit_log row per portfolio, stale as-of and UTC day (re-runs within the day add nothing).
    Returns whether the verdict was stale."""
    from storage.stream import write_audit
    from trading.records import stable_id

    if not verdict.stale:
        return False
    day_start = datetime.combine(at.date(), time.min, timezone.utc)
    write_audit(conn, stable_id("weights_stale", verdict.portfolio, str(verdict.as_of), str(at.date())),
                int(day_start.timestamp()) * 1_000_000_000, "dagster", "weights_stale", verdict.portfolio,
                verdict.reason, {"as_of": str(verdict.as_of) if verdict.as_of else None,
                                 "age_hours": None if verdict.age_hours == float("inf") else verdict.age_hours,
                                 "max_age_hours": verdict.max_age_hours, "detected_at": at.isoformat()})
    return True


@dg.asset_check(asset=target_weights, name="weights_fresh",
                description="The target weights that trade now (latest as_of before today) are no older than "
                            "weights_max_age_hours; a failure also writes an audit_log alert (action weights_stale).")
def weights_fresh(context: dg.AssetCheckExecutionContext, config: WeightsFreshConfig,
                  db: PostgresResource) -> dg.AssetCheckResult:
    from trading.portfolio.staleness import staleness

    at = _judged_at(config.at)
    max_age = get_settings().weights_max_age_hours if config.max_age_hours is None else config.max_age_hours
    if not max_age > 0:
        raise dg.Failure(description=f"weights_fresh: max_age_hours must be > 0, got {max_age}")
    with db.begin() as conn:
        rows = weights_for_trading_day(conn, config.portfolio, at.date())
        verdict = staleness(config.portfolio, rows[0].as_of if rows else None, at, max_age)
        alerted = stale_alert(conn, verdict, at)
    if alerted:  # the alert's log line (the audit row is its record)
        context.log.warning(f"ALERT weights_stale: {verdict.reason}")
        log.warning("ALERT weights_stale: %s", verdict.reason)
    metadata = {"portfolio": config.portfolio, "as_of": str(verdict.as_of) if verdict.as_of else "none",
                "max_age_hours": max_age, "judged_at": at.isoformat()}
    if verdict.as_of is not None:  # no weights at all: no age to show (the description says so)
        metadata["age_hours"] = round(verdict.age_hours, 2)
    return dg.AssetCheckResult(passed=not verdict.stale, severity=dg.AssetCheckSeverity.ERROR,
                               description=verdict.reason, metadata=metadata)
