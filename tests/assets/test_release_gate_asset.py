"""The tune job's release gate (assets/tuning.py): the study's best becomes a candidate release, judged
against the running release on bars the study never saw; the decision is a strategy_releases change, an
audit_log row, asset metadata and the ``release_gate`` check."""

from __future__ import annotations

import uuid

import sqlalchemy as sa


def _run(pg_url: str, **over):
    import dagster as dg

    from assets.ml import MLResource
    from assets.resources import PostgresResource
    from assets.tuning import strategy_tuning

    cfg = {"strategy": "sma_cross", "n_trials": 4, "symbol": "BTC/USDT", "days": 1, "source": "sim",
           "space_json": '{"fast": [2, 30], "slow": [40, 200]}', "study_name": f"gate-{uuid.uuid4().hex[:8]}",
           **over}
    r = dg.materialize([strategy_tuning], resources={"db": PostgresResource(url=pg_url),
                                                     "ml": MLResource(tracking_uri="")},
                       run_config={"ops": {"strategy_tuning": {"config": cfg}}})
    meta = {k: v.value for k, v in r.asset_materializations_for_node("strategy_tuning")[0].metadata.items()}
    checks = r.get_asset_check_evaluations()
    return meta, checks


def test_tuned_candidate_is_refused_then_promoted_only_through_the_gate(engine, pg_url):
    from storage import releases as rel

    account = f"gate-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:  # what the stream runs (it seeds this at start)
        rel.seed_release(conn, account, "sma_cross", {"fast": 5, "slow": 20}, actor="stream")
    # a margin no strategy can clear: refused, and the running release stays
    meta, checks = _run(pg_url, account=account, sharpe_margin=1e9)
    assert meta["release_decision"] == "refused" and "margin 1000000000.000" in meta["release_reason"]
    assert meta["bars"] == 1440 and meta["tuned_bars"] == 1440 - 432  # the gate's 30% was kept from the study
    assert [(c.check_name, c.passed) for c in checks] == [("release_gate", True)]
    with engine.connect() as conn:
        refused = rel.get_release(conn, account, "sma_cross", meta["release_version"])
        assert refused.status == "refused" and rel.live_release(conn, account, "sma_cross").version == 1
    ev = refused.evidence
    assert ev["running"] == "v1" and ev["running_params"]["fast"] == 5
    # out of sample: every gate window starts after the last bar the study saw; both on the same windows
    assert all(w["start_ts"] > ev["tuned_on"]["last_ts"] for w in ev["gate"]["candidate"])
    assert [w["start_ts"] for w in ev["gate"]["candidate"]] == [w["start_ts"] for w in ev["gate"]["running"]]

    # a gate anything passes (it is the rule that decides, not the caller): promoted, live in the table
    meta, checks = _run(pg_url, account=account, sharpe_margin=-1e9, min_win_fraction=0.0,
                        max_drawdown_limit=1.0, study_name=f"gate-{uuid.uuid4().hex[:8]}",
                        gate_symbols=["BTC/USDT", "ETH/USDT"])
    assert meta["release_decision"] == "promoted", meta["release_reason"]
    assert checks[0].passed
    with engine.connect() as conn:
        live = rel.live_release(conn, account, "sma_cross")
        assert live.version == meta["release_version"]
    # traded on both symbols, as the stream trades a slot on each
    assert live.evidence["gate_symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert set(live.evidence["gate"]["candidate"][0]["symbols"]) == {"BTC/USDT", "ETH/USDT"}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, actor, reason FROM audit_log WHERE scope = :s ORDER BY ts"),
                            {"s": f"account:{account}/strategy:sma_cross"}).fetchall()
    assert [r[0] for r in rows] == ["release_seeded", "release_refused", "release_promoted"]
    assert rows[1][1].startswith("dagster:") and "margin" in rows[1][2]
