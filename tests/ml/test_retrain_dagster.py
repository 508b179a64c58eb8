"""A full retrain through Dagster on sim bars written to market_data_clean for a dedicated exchange."""

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.ml import ASSET_CHECKS, ASSETS, JOBS, RESOURCES, SCHEDULES, SENSORS, MLResource, ml_challenger, ml_features, ml_labels
from ml.registry import alias_version
from orchestration.resources import PostgresResource

from .conftest import SMALL_FEATURES, sim_bars, write_clean_bars

EXCHANGE = "mltest"


def _resources(pg_url, tracking_uri, **over):
    kw = dict(tracking_uri=tracking_uri, model_name="dagster-m", exchange=EXCHANGE, warmup_bars=300, horizon=10,
              barrier_k=1.5, n_splits=2, min_fold_rows=100, ag_time_limit=4, max_drawdown_limit=1.0, min_sharpe=-1e9,
              **SMALL_FEATURES)
    return {"db": PostgresResource(url=pg_url), "ml": MLResource(**{**kw, **over})}


def test_definitions_load():
    defs = dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=JOBS, schedules=SCHEDULES, sensors=SENSORS,
                          resources={**RESOURCES, "db": PostgresResource(url="postgresql+psycopg://x@127.0.0.1:1/x")})
    assert defs.resolve_job_def("retrain") is not None
    assert {s.name for s in SCHEDULES} == {"ml_features_job_schedule", "retrain_nightly"}


def test_retrain_end_to_end(engine, pg_url, tracking_uri):
    write_clean_bars(engine, sim_bars(2 * 1440, seed=21, exchange=EXCHANGE))
    res = _resources(pg_url, tracking_uri)
    for day in ("2026-11-01", "2026-11-02"):
        r = dg.materialize([ml_features, ml_labels], partition_key=day, resources=res)
        assert r.success
    again = dg.materialize([ml_features], partition_key="2026-11-02", resources=res)  # idempotent rerun
    assert again.success
    with engine.connect() as conn:
        n, distinct = conn.execute(sa.text("SELECT count(*), count(DISTINCT (symbol, ts)) FROM ml_features WHERE exchange = :e"),
                                   {"e": EXCHANGE}).one()
    assert n == distinct == 3 * 2 * 1440

    result = dg.materialize([ml_challenger, *ASSET_CHECKS], resources=res,
                            run_config={"ops": {"ml_challenger": {"config": {"days": 2}}}})
    assert result.success
    meta = result.asset_materializations_for_node("ml_challenger")[0].metadata
    version = meta["version"].value
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1
    # permissive absolute thresholds and no champion: the gate passes and the alias moves
    assert checks[0].passed and alias_version(tracking_uri, "dagster-m", "champion") == version
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, training_data_hash, gate->>'reason' FROM ml_models "
                                   "WHERE model_name = 'dagster-m' AND version = :v"), {"v": int(version)}).one()
    assert row[0] == "champion" and row[1].startswith("fs=") and "no champion" in row[2]

    # a second challenger facing an impossible margin: gate fails, the alias stays
    strict = _resources(pg_url, tracking_uri, sharpe_margin=1e9, use_autogluon=False)
    result2 = dg.materialize([ml_challenger, *ASSET_CHECKS], resources=strict,
                             run_config={"ops": {"ml_challenger": {"config": {"days": 2}}}})
    assert result2.success
    v2 = result2.asset_materializations_for_node("ml_challenger")[0].metadata["version"].value
    assert not result2.get_asset_check_evaluations()[0].passed
    assert alias_version(tracking_uri, "dagster-m", "champion") == version
    assert alias_version(tracking_uri, "dagster-m", "challenger") == v2


def test_missing_data_fails_with_a_clear_message(pg_url, tracking_uri):
    res = _resources(pg_url, tracking_uri, exchange="nowhere")
    with pytest.raises(dg.Failure, match="market_data_clean has no 1m bars"):
        dg.materialize([ml_features], partition_key="2026-11-03", resources=res)
    with pytest.raises(dg.Failure, match="no stored features"):
        dg.materialize([ml_challenger], resources=res)
