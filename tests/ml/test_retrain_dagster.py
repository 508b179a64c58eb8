"""A full retrain through Dagster on sim bars written to market_data_clean for a dedicated exchange."""

import dagster as dg
import pytest
import sqlalchemy as sa

from assets import ml as ml_assets
from assets.ml import MLResource, ml_challenger, ml_features, ml_labels, ml_promotion, promotion_gate
from assets.resources import PostgresResource
from ml.registry import alias_version

from .conftest import SMALL_FEATURES, sim_bars, write_clean_bars

EXCHANGE = "mltest"


def _resources(pg_url, tracking_uri, **over):
    kw = dict(tracking_uri=tracking_uri, model_name="dagster-m", exchange=EXCHANGE, warmup_bars=300, horizon=10,
              barrier_k=1.5, n_splits=2, min_fold_rows=100, ag_time_limit=4, max_drawdown_limit=1.0, min_sharpe=-1e9,
              min_t_stat=-1e9,
              **SMALL_FEATURES)
    return {"db": PostgresResource(url=pg_url), "ml": MLResource(**{**kw, **over})}


def test_definitions_load():
    from orchestration import automation

    from deploy.settings import get_settings

    settings = get_settings()
    defs = dg.Definitions(
        assets=dg.load_assets_from_modules([ml_assets]), asset_checks=dg.load_asset_checks_from_modules([ml_assets]),
        jobs=[automation.retrain_job, automation.ml_features_job],
        schedules=[s for s in automation.schedules(settings) if s.name in ("ml_features_job_schedule",
                                                                             "retrain_nightly")],
        sensors=[automation.decay_sensor(settings)],
        resources={"ml": MLResource(tracking_uri="sqlite:///unused.db"),
                   "db": PostgresResource(url="postgresql+psycopg://x@127.0.0.1:1/x")})
    retrain = defs.resolve_job_def("retrain")
    assert {k.to_user_string() for k in retrain.asset_layer.executable_asset_keys} == {"ml_challenger", "ml_promotion"}
    assert defs.resolve_job_def("ml_features_job").partitions_def == ml_features.partitions_def
    # the check is on the promotion decision, not on the challenger
    assert {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys} == {
        ("ml_promotion", "promotion_gate")}


def _decision(result):
    return {k: v.value for k, v in result.asset_materializations_for_node("ml_promotion")[0].metadata.items()}


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

    instance = dg.DagsterInstance.ephemeral()  # one instance: the check reads the decision's materialisation
    result = dg.materialize([ml_challenger, ml_promotion, promotion_gate], resources=res, instance=instance,
                            run_config={"ops": {"ml_challenger": {"config": {"days": 2}}}})
    assert result.success
    meta = result.asset_materializations_for_node("ml_challenger")[0].metadata
    version = meta["version"].value
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1
    # permissive absolute thresholds and no champion: the gate passes and the alias moves; the decision is
    # the promotion asset's materialisation, with its evidence, and the check finds it consistent
    decision = _decision(result)
    assert decision["promoted"] and decision["champion_before"] == "None" and decision["champion_after"] == version
    assert decision["decision"]["passed"] and decision["decision"]["challenger"]["sharpe"] is not None
    # judged by the stream's rule: long-only at the stream's sizing, after fees, with its t statistic
    rule = decision["decision"]["rule"]
    assert rule["allow_short"] is False and rule["fraction_per_symbol"] == 0.05 and rule["slippage_bps"] == 1.0
    assert decision["decision"]["challenger"]["fees"] > 0 and "t_stat" in decision["decision"]["challenger"]
    assert checks[0].passed and alias_version(tracking_uri, "dagster-m", "champion") == version
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, training_data_hash, gate->>'reason' FROM ml_models "
                                   "WHERE model_name = 'dagster-m' AND version = :v"), {"v": int(version)}).one()
    assert row[0] == "champion" and row[1].startswith("fs=") and "no champion" in row[2]

    # a second challenger facing an impossible margin: gate fails, the alias stays
    strict = _resources(pg_url, tracking_uri, sharpe_margin=1e9, use_autogluon=False)
    result2 = dg.materialize([ml_challenger, ml_promotion, promotion_gate], resources=strict, instance=instance,
                             run_config={"ops": {"ml_challenger": {"config": {"days": 2}}}})
    assert result2.success
    v2 = result2.asset_materializations_for_node("ml_challenger")[0].metadata["version"].value
    rejected = _decision(result2)
    assert not rejected["promoted"] and rejected["champion_after"] == version and "margin" in rejected["reason"]
    # with a champion, the paired t statistic on the same bars' returns (as shadow mode) is part of the evidence
    assert "paired_t_stat" in rejected["decision"]["challenger"]
    assert result2.get_asset_check_evaluations()[0].passed  # a rejection recorded consistently is not a failure
    assert alias_version(tracking_uri, "dagster-m", "champion") == version
    assert alias_version(tracking_uri, "dagster-m", "challenger") == v2

    # the check only checks: run alone, again and again, it moves no alias; it fails once the registry
    # no longer holds the champion the last decision left (here: the alias moved by hand)
    for _ in range(2):
        alone = dg.materialize([promotion_gate], resources=strict, instance=instance, selection=dg.AssetSelection.checks(promotion_gate))
        assert alone.get_asset_check_evaluations()[0].passed
        assert alias_version(tracking_uri, "dagster-m", "champion") == version
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias("dagster-m", "champion", v2)
    moved = dg.materialize([promotion_gate], resources=strict, instance=instance, selection=dg.AssetSelection.checks(promotion_gate))
    evaluation = moved.get_asset_check_evaluations()[0]
    assert not evaluation.passed and "registry's champion" in str(evaluation.metadata["problems"].value)
    assert alias_version(tracking_uri, "dagster-m", "champion") == v2


def test_missing_data_fails_with_a_clear_message(pg_url, tracking_uri):
    res = _resources(pg_url, tracking_uri, exchange="nowhere")
    with pytest.raises(dg.Failure, match="market_data_clean has no 1m bars"):
        dg.materialize([ml_features], partition_key="2026-11-03", resources=res)
    with pytest.raises(dg.Failure, match="no stored features"):
        dg.materialize([ml_challenger], resources=res)
