"""target_weights materialised for real (dagster.materialize) against the test PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from assets import partitions, portfolio as portfolio_assets
from assets.portfolio import target_weights
from assets.resources import PostgresResource
from deploy.settings import get_settings

from .conftest import SYMBOLS

SECTORS = {"PFA/USD": "L1", "PFB/USD": "L1", "PFC/USD": "DeFi"}


def run(pg_url, partition: str, **config):
    cfg = {"exchange": "test-pf", "symbols": SYMBOLS, "lookback_days": 30, **config}
    return dg.materialize([target_weights], partition_key=partition, resources={"db": PostgresResource(url=pg_url)},
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
    assert not dg.load_asset_checks_from_modules([portfolio_assets])  # weights_valid is declared on the asset
    defs = dg.Definitions(assets=partitions.for_settings([target_weights], get_settings()),
                          jobs=[automation.target_weights_job], schedules=[s for s in automation.schedules(get_settings())
                                                 if s.name == "target_weights_job_schedule"],
                          resources={"db": PostgresResource(url="x")})
    job = defs.resolve_job_def("target_weights_job")
    assert job.partitions_def.get_partition_keys()[0] == get_settings().history_start
    schedule = defs.resolve_schedule_def("target_weights_job_schedule")
    assert schedule.cron_schedule == "30 0 * * *" and schedule.job_name == job.name


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
