"""target_weights materialised for real (dagster.materialize) against the test PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from assets import partitions, portfolio as portfolio_assets
from assets.portfolio import target_weights
from assets.resources import MarketDataSource, PostgresResource
from deploy.settings import get_settings

from .conftest import SYMBOLS

SECTORS = {"PFA/USD": "L1", "PFB/USD": "L1", "PFC/USD": "DeFi"}


def run(pg_url, partition: str, **config):
    cfg = {"exchange": "test-pf", "symbols": SYMBOLS, "lookback_days": 30, **config}
    return dg.materialize([target_weights], partition_key=partition, resources={"db": PostgresResource(url=pg_url), "market_source": MarketDataSource()},
                          run_config={"ops": {"target_weights": {"config": cfg}}}, raise_on_error=False)


def stored(engine, portfolio: str, as_of: str) -> dict[str, float]:
    with engine.connect() as conn:
        return {s: float(w) for s, w in conn.execute(sa.text(
            "SELECT symbol, weight FROM target_weights WHERE portfolio = :p AND as_of = CAST(:d AS date)"),
            {"p": portfolio, "d": as_of}).all()}


def failure_message(result) -> str:
    """Messages of each step failure and its causes (Dagster wraps the asset's exception)."""
    out = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            out.append(error.message)
            error = error.cause
    return " ".join(out)


def test_definitions_found_in_the_package():
    from orchestration import automation

    assert [a.key for a in dg.load_assets_from_modules([portfolio_assets])] == [target_weights.key]
    # weights_valid is declared on the asset; weights_fresh is a check of its own, run on a schedule
    [fresh] = dg.load_asset_checks_from_modules([portfolio_assets])
    assert fresh.check_keys == portfolio_assets.weights_fresh.check_keys
    settings = get_settings()
    defs = dg.Definitions(assets=partitions.for_settings([target_weights], settings), asset_checks=[fresh],
                          jobs=[automation.target_weights_job, automation.weights_freshness_job],
                          schedules=[s for s in automation.schedules(settings)
                                     if s.name in ("target_weights_job_schedule", "weights_freshness_hourly")],
                          resources={"db": PostgresResource(url="x"), "market_source": MarketDataSource()})
    job = defs.resolve_job_def("target_weights_job")
    assert job.partitions_def.get_partition_keys()[0] == get_settings().history_start
    schedule = defs.resolve_schedule_def("target_weights_job_schedule")
    assert schedule.cron_schedule == "30 0 * * *" and schedule.job_name == job.name
    hourly = defs.resolve_schedule_def("weights_freshness_hourly")
    assert hourly.default_status == dg.DefaultScheduleStatus.RUNNING and hourly.cron_schedule == "15 * * * *"
    assert automation.weights_freshness_job in automation.JOBS


def test_partitions_come_from_the_settings_when_the_location_loads():
    """No settings at import: the modules declare the default partitioning, the location applies the
    deployment's history start and symbols to every partitioned asset (and nothing else)."""
    from assets.market_data import ohlcv
    from assets.ml import ml_challenger, ml_features
    from deploy.settings import Settings

    settings = Settings(history_start="2026-11-10", symbols=["BTC/USDT", "ETH/USDT"])
    daily, by_symbol, ml_daily, unpartitioned = partitions.for_settings(
        [target_weights, ohlcv, ml_features, ml_challenger], settings)
    assert daily.partitions_def.get_first_partition_key() == "2026-11-10" == ml_daily.partitions_def.get_first_partition_key()
    assert by_symbol.partitions_def.get_partitions_def_for_dimension("symbol").get_partition_keys() == [
        "BTC-USDT", "ETH-USDT"]
    assert by_symbol.check_specs and list(by_symbol.check_specs) == list(ohlcv.check_specs)  # checks kept
    assert unpartitioned is ml_challenger and target_weights.partitions_def == partitions.DAILY  # module untouched


def test_materialise_writes_weights_idempotently_with_inputs(pg_url, engine, pf_data):
    config = {"portfolio": "pf-main", "model": "min_variance", "max_weight": 0.6, "sector_map": SECTORS,
              "sector_caps": {"L1": 0.7}}
    for _ in range(2):  # a re-run replaces the partition's rows
        result = run(pg_url, "2026-11-20", **config)
        assert result.success
    weights = stored(engine, "pf-main", "2026-11-20")
    assert set(weights) == set(SYMBOLS) and sum(weights.values()) == pytest.approx(1, abs=1e-9)
    assert max(weights.values()) <= 0.6 + 1e-9 and weights["PFA/USD"] + weights["PFB/USD"] <= 0.7 + 1e-9
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "weights_valid" and check.passed
    meta = result.asset_materializations_for_node("target_weights")[0].metadata
    assert meta["solver_status"].value == "optimal" and meta["days_used"].value == 30
    assert "| PFC/USD |" in meta["weights"].value and meta["expected_vol"].value > 0
    with engine.connect() as conn:
        rows = conn.execute(sa.text("""SELECT count(*), min(model), min(solver_status), min(inputs->>'estimator'),
                                       min(inputs->'constraints'->'sector_caps'->>'L1'), min(inputs->>'first_day')
                                       FROM target_weights WHERE portfolio = 'pf-main'""")).one()
    assert tuple(rows) == (3, "min_variance", "optimal", "ledoit_wolf", "0.7", "2026-10-22")
    # the decision is in audit_log, once per run (a re-run is another decision)
    with engine.connect() as conn:
        audit = conn.execute(sa.text("""SELECT actor, reason, details->>'solver_status' FROM audit_log
                                        WHERE action = 'reweight' AND scope = 'portfolio:pf-main'""")).all()
    assert len(audit) == 2, audit  # the test materialises the day twice
    assert {a[0] for a in audit} == {"portfolio"} and {a[2] for a in audit} == {"optimal"}
    assert audit[0][1].startswith("min_variance weights for 2026-11-20: PFA/USD ")


def test_the_market_source_prices_the_portfolio_by_default(pg_url, engine, pf_data):
    """No exchange in the config: the bars of the market the platform ingests (TRADELOOP_MARKET_SOURCE, the
    market_source resource) -- it used to be "sim" whatever the source, so a platform on a real exchange
    never re-weighted."""
    cfg = {"portfolio": "pf-source", "symbols": SYMBOLS, "lookback_days": 30}
    ok = dg.materialize([target_weights], partition_key="2026-11-20", raise_on_error=False,
                        resources={"db": PostgresResource(url=pg_url), "market_source": MarketDataSource(kind="test-pf")},
                        run_config={"ops": {"target_weights": {"config": cfg}}})
    assert ok.success and set(stored(engine, "pf-source", "2026-11-20")) == set(SYMBOLS)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT DISTINCT inputs->>'exchange' FROM target_weights WHERE portfolio = 'pf-source'")
                            ).scalars().all() == ["test-pf"]
    sim = dg.materialize([target_weights], partition_key="2026-11-20", raise_on_error=False,
                         resources={"db": PostgresResource(url=pg_url), "market_source": MarketDataSource()},
                         run_config={"ops": {"target_weights": {"config": cfg}}})
    assert not sim.success and "no clean 1m bars on sim" in failure_message(sim)


def test_turnover_is_measured_against_the_previous_day(pg_url, engine, pf_data):
    assert run(pg_url, "2026-11-19", portfolio="pf-turn", model="risk_parity").success
    before = stored(engine, "pf-turn", "2026-11-19")
    result = run(pg_url, "2026-11-20", portfolio="pf-turn", model="min_variance", turnover_limit=0.05)
    assert result.success
    after = stored(engine, "pf-turn", "2026-11-20")
    turnover = sum(abs(after[s] - before[s]) for s in SYMBOLS)
    assert turnover == pytest.approx(0.05, abs=1e-6)  # min variance is further away than 0.05: it binds
    free = run(pg_url, "2026-11-20", portfolio="pf-turn", model="min_variance")
    assert free.success
    assert sum(abs(stored(engine, "pf-turn", "2026-11-20")[s] - before[s]) for s in SYMBOLS) > 0.1


@pytest.mark.parametrize("model,extra", [
    ("mean_variance", {"risk_aversion": 5.0}),
    ("risk_parity", {}),
    ("black_litterman", {"views": [{"asset": "PFC/USD", "q": 0.5, "confidence": 0.8},
                                   {"asset": "PFA/USD", "versus": "PFB/USD", "q": 0.05}]}),
    ("kelly", {"long_only": False, "kelly_fraction": 0.5, "leverage_cap": 1.5, "min_weight": -0.5}),
    ("target_risk", {"target": 0.5, "estimator": "ewma"}),
])
def test_every_model_through_the_asset(pg_url, engine, pf_data, model, extra):
    result = run(pg_url, "2026-11-18", portfolio=f"pf-{model}", model=model, **extra)
    assert result.success, failure_message(result)
    assert result.get_asset_check_evaluations()[0].passed
    weights = stored(engine, f"pf-{model}", "2026-11-18")
    assert set(weights) == set(SYMBOLS)
    if model == "kelly":
        assert sum(abs(w) for w in weights.values()) <= 1.5 + 1e-6 and min(weights.values()) >= -0.5 - 1e-6
    else:
        assert sum(weights.values()) == pytest.approx(1, abs=1e-6)


def test_infeasible_config_fails_naming_the_constraint(pg_url, engine, pf_data):
    result = run(pg_url, "2026-11-20", portfolio="pf-infeasible", max_weight=0.2)
    assert not result.success
    assert "binding constraint(s) ['bounds', 'budget']" in failure_message(result)
    assert stored(engine, "pf-infeasible", "2026-11-20") == {}


def test_missing_day_and_short_history_fail_clearly(pg_url, engine, pf_data):
    result = run(pg_url, "2026-11-20", portfolio="pf-gap", exchange="test-pf-gap")
    assert not result.success and "days without a close" in failure_message(result)
    assert "'PFB/USD': ['2026-11-03']" in failure_message(result)
    result = run(pg_url, "2026-11-20", portfolio="pf-short", lookback_days=5)
    assert not result.success and "need at least min_days=10" in failure_message(result)
    result = run(pg_url, "2026-11-20", portfolio="pf-rp", model="risk_parity", max_weight=0.5)
    assert not result.success and "risk_parity is long-only and takes no other constraints; remove ['upper']" \
        in failure_message(result)
    result = run(pg_url, "2026-11-20", portfolio="pf-none", symbols=["NOPE/USD"])
    assert not result.success and "no clean 1m bars on test-pf for ['NOPE/USD']" in failure_message(result)
    assert stored(engine, "pf-gap", "2026-11-20") == {} and stored(engine, "pf-short", "2026-11-20") == {}


def turnover(engine, portfolio: str, before: str, after: str) -> float:
    a, b = stored(engine, portfolio, before), stored(engine, portfolio, after)
    return sum(abs(b[s] - a.get(s, 0.0)) for s in b)


def test_a_higher_turnover_penalty_trades_less(pg_url, engine, pf_data):
    """The penalty is a cost on sum |w - w_previous| in the objective: the higher it is, the nearer the
    new weights stay to the previous day's (risk parity's, far from min variance's)."""
    seen = []
    for penalty in (0.0, 0.01, 0.05):
        pf = f"pf-pen-{penalty}"
        assert run(pg_url, "2026-11-19", portfolio=pf, model="risk_parity").success
        result = run(pg_url, "2026-11-20", portfolio=pf, model="min_variance", turnover_penalty=penalty)
        assert result.success, failure_message(result)
        meta = result.asset_materializations_for_node("target_weights")[0].metadata
        assert meta["turnover_penalty"].value == penalty
        seen.append(turnover(engine, pf, "2026-11-19", "2026-11-20"))
    assert seen[0] > seen[1] > seen[2], seen
    assert seen[0] > 0.1 and seen[2] < 0.5 * seen[0]


def test_the_settings_are_the_defaults_of_the_cost_terms(pg_url, engine, pf_data, monkeypatch):
    """Config unset: the deployment's settings decide the penalty and the minimum trade."""
    monkeypatch.setenv("TRADELOOP_PORTFOLIO_TURNOVER_PENALTY", "0.02")
    monkeypatch.setenv("TRADELOOP_PORTFOLIO_MIN_TRADE", "0.5")  # more than any one change: nothing moves
    get_settings.cache_clear()
    try:
        assert portfolio_assets.trading_costs(portfolio_assets.TargetWeightsConfig()) == (0.5, 0.02)
        assert portfolio_assets.trading_costs(portfolio_assets.TargetWeightsConfig(min_trade=0.0)) == (0.0, 0.02)
        assert run(pg_url, "2026-11-19", portfolio="pf-set", model="risk_parity", min_trade=0.0,
                   turnover_penalty=0.0).success
        result = run(pg_url, "2026-11-20", portfolio="pf-set", model="min_variance")
        assert result.success, failure_message(result)
        meta = result.asset_materializations_for_node("target_weights")[0].metadata
        assert meta["turnover_penalty"].value == 0.02 and meta["min_trade"].value == 0.5
        assert sorted(meta["frozen"].value) == SYMBOLS  # every change was below the minimum: all held
        assert stored(engine, "pf-set", "2026-11-20") == pytest.approx(stored(engine, "pf-set", "2026-11-19"))
        # and a model that cannot take the penalty refuses it in one line instead of ignoring it
        result = run(pg_url, "2026-11-20", portfolio="pf-set-rp", model="risk_parity", min_trade=0.0)
        assert not result.success
        assert "remove ['turnover_penalty']" in failure_message(result)
    finally:
        get_settings.cache_clear()


def test_a_small_trade_is_not_made(pg_url, engine, pf_data):
    assert run(pg_url, "2026-11-19", portfolio="pf-mt", model="min_variance").success
    day19 = stored(engine, "pf-mt", "2026-11-19")
    free = run(pg_url, "2026-11-20", portfolio="pf-mt", model="min_variance", min_trade=0.0)
    moves = {s: abs(w - day19[s]) for s, w in stored(engine, "pf-mt", "2026-11-20").items()}
    small = [s for s, m in moves.items() if 0 < m == min(moves.values())]
    assert free.success and small
    limit = (min(moves.values()) + sorted(moves.values())[1]) / 2  # between the smallest and the next change
    result = run(pg_url, "2026-11-20", portfolio="pf-mt", model="min_variance", min_trade=limit)
    assert result.success, failure_message(result)
    after = stored(engine, "pf-mt", "2026-11-20")
    assert after[small[0]] == pytest.approx(day19[small[0]], abs=1e-12)
    assert all(abs(after[s] - day19[s]) >= limit - 1e-9 for s in SYMBOLS if s != small[0])


# ---- weights_fresh -------------------------------------------------------------------------------

def check_fresh(pg_url, **config):
    from assets.portfolio import weights_fresh

    result = dg.materialize([target_weights, weights_fresh], selection=dg.AssetSelection.checks(weights_fresh),
                            resources={"db": PostgresResource(url=pg_url), "market_source": MarketDataSource()},
                            run_config={"ops": {"target_weights_weights_fresh": {"config": config}}}, raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def alerts(engine, portfolio: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT actor, action, scope, reason, details FROM audit_log WHERE scope = :p AND action = 'weights_stale'"
            " ORDER BY ts"), {"p": portfolio})]


def test_stale_weights_fail_the_check_and_alert_once_a_day(pg_url, engine, pf_data, caplog):
    pf = "pf-fresh"
    assert run(pg_url, "2026-11-20", portfolio=pf).success  # weights as of the 20th: trade on the 21st
    ok = check_fresh(pg_url, portfolio=pf, at="2026-11-21T12:00:00")
    assert ok.passed and ok.metadata["age_hours"].value == 12.0 and ok.metadata["as_of"].value == "2026-11-20"
    assert alerts(engine, pf) == []
    caplog.set_level("WARNING")
    for hour in ("06", "07"):  # the hourly schedule: still stale an hour later, one alert for the day
        stale = check_fresh(pg_url, portfolio=pf, at=f"2026-11-23T{hour}:15:00")
        assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
        assert stale.metadata["age_hours"].value == pytest.approx(54.25 + (hour == "07"))
    [alert] = alerts(engine, pf)
    assert alert["actor"] == "dagster" and "as of 2026-11-20" in alert["reason"] and "26 h allowed" in alert["reason"]
    assert alert["details"]["max_age_hours"] == 26.0 and alert["details"]["as_of"] == "2026-11-20"
    assert "ALERT weights_stale: target weights of 'pf-fresh' are as of 2026-11-20" in caplog.text
    check_fresh(pg_url, portfolio=pf, at="2026-11-24T00:15:00")  # a new day of staleness: a new alert
    assert len(alerts(engine, pf)) == 2
    # a larger allowance for this portfolio: fresh again, nothing raised
    assert check_fresh(pg_url, portfolio=pf, at="2026-11-23T06:15:00", max_age_hours=72).passed


def test_a_portfolio_without_weights_is_stale(pg_url, engine, pf_data):
    missing = check_fresh(pg_url, portfolio="pf-never", at="2026-11-23T06:15:00")
    assert not missing.passed and missing.metadata["as_of"].value == "none" and "age_hours" not in missing.metadata
    assert alerts(engine, "pf-never")[0]["reason"] == "portfolio 'pf-never' has no target weights"


def test_the_scheduled_job_of_the_code_location_runs_the_check(pg_url, engine, pf_data, monkeypatch):
    """What the hourly schedule launches: the location's weights_freshness job, with its own resources."""
    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()
    try:
        from orchestration.definitions import defs

        job = defs().resolve_job_def("weights_freshness")
        result = job.execute_in_process(run_config={"ops": {"target_weights_weights_fresh": {
            "config": {"portfolio": "pf-job", "at": "2026-11-23T06:15:00"}}}}, raise_on_error=False)
        [evaluation] = result.get_asset_check_evaluations()
        assert not evaluation.passed and len(alerts(engine, "pf-job")) == 1
    finally:
        get_settings.cache_clear()
