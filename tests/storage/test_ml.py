"""storage.ml: features and labels replace their window and read back; the model ledger's transitions."""

from __future__ import annotations

import uuid

import polars as pl
import sqlalchemy as sa

from storage import ml as ml_store

NS = 1_000_000_000
T0 = 1_795_000_000 * NS  # 2026-11-18
MIN = 60 * NS


def test_features_replace_their_window_and_read_back(engine):
    fs, ex = f"st-fs-{uuid.uuid4().hex[:6]}", "st-ml"
    names = ["f1", "f2"]
    first = pl.DataFrame({"symbol": ["A", "A", "B"], "ts": [T0, T0 + MIN, T0], "f1": [1.0, 2.0, 3.0],
                          "f2": [float("nan"), 0.5, None]})
    with engine.begin() as conn:
        assert ml_store.replace_features(conn, fs, 1, names, {"w": 3}, ["B", "A"], ex, T0, T0 + 10 * MIN, first) == 3
        # a rerun of the same window with fewer rows: the window holds exactly the new rows
        assert ml_store.replace_features(conn, fs, 1, names, {"w": 3}, ["B", "A"], ex, T0, T0 + 10 * MIN,
                                         first.head(2)) == 2
    with engine.connect() as conn:
        back = ml_store.load_features(conn, fs, ex, names, T0, T0 + 10 * MIN).sort("symbol", "ts")
        assert back.rows() == [("A", T0, 1.0, None), ("A", T0 + MIN, 2.0, 0.5)]  # NaN stored as null
        assert ml_store.last_feature_ts(conn, fs, ex).timestamp() * NS == T0 + MIN
        assert [v["f1"] for v in ml_store.feature_values(conn, fs, ex, start_ns=T0, end_ns=T0 + MIN)] == [1.0]
        assert sorted(v["f1"] for v in ml_store.feature_values(conn, fs, ex, recent_hours=1)) == [1.0, 2.0]
        params = conn.execute(sa.text("SELECT params, symbols FROM ml_feature_sets WHERE feature_set = :fs"),
                              {"fs": fs}).one()
    assert tuple(params) == ({"w": 3}, ["A", "B"])


def test_labels_replace_their_window_and_read_back(engine):
    ls, ex = f"st-ls-{uuid.uuid4().hex[:6]}", "st-ml"
    labels = pl.DataFrame({"symbol": ["A", "A"], "ts": [T0, T0 + MIN], "fwd_ret_1": [0.01, -0.02],
                           "fwd_ret": [0.03, -0.01], "tb_label": [1, -1], "tb_t1": [T0 + 5 * MIN, T0 + 6 * MIN]})
    with engine.begin() as conn:
        ml_store.replace_labels(conn, ls, ex, T0, T0 + 10 * MIN, labels)
        ml_store.replace_labels(conn, ls, ex, T0, T0 + 10 * MIN, labels)
    with engine.connect() as conn:
        back = ml_store.load_labels(conn, ls, ex, T0, T0 + 10 * MIN).sort("ts")
    assert back.rows() == labels.rows() and back.schema["tb_label"] == pl.Int8


def test_model_ledger_promotion_and_rollback(engine):
    m = f"st-model-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        for v in ("1", "2", "3"):
            ml_store.record_model(conn, m, v, f"run{v}", f"h{v}", "challenger",
                                  {"window_start_ns": 10 * int(v), "holdout_start_ns": 20 * int(v)})
        ml_store.make_champion(conn, m, "1", gate={"passed": True, "reason": "first"})
    with engine.begin() as conn:
        ml_store.make_champion(conn, m, "2", gate={"passed": True, "reason": "better"})
        ml_store.reject_model(conn, m, "3", gate={"passed": False, "reason": "worse"})
        ml_store.reject_model(conn, m, "2", gate={"passed": False, "reason": "too late"})  # a champion is not rejected
    with engine.connect() as conn:
        status = {r["version"]: (r["status"], r["gate_reason"]) for r in ml_store.model_versions(conn, m)}
        assert status == {1: ("retired", "first"), 2: ("champion", "better"), 3: ("rejected", "worse")}
        assert ml_store.champion_window(conn, m) == ("2", 20, 40)
        assert ml_store.previous_champion(conn, m, "2") == "1"
        assert ml_store.previous_champion(conn, m, "1") is None
        assert ml_store.model_metrics(conn, m, "3")["holdout_start_ns"] == 60
        assert ml_store.model_metrics(conn, m, "9") is None
    with engine.begin() as conn:  # rollback: plain status moves
        ml_store.reject_model(conn, m, "2")
        ml_store.make_champion(conn, m, "1")
        first = ml_store.audit(conn, "rollback", f"model:{m}", "manual", {"from": "2"}, m, "2", "1")
        again = ml_store.audit(conn, "rollback", f"model:{m}", "manual", {"from": "2"}, m, "2", "1")
    with engine.connect() as conn:
        assert {r["version"]: r["status"] for r in ml_store.model_versions(conn, m)} == {1: "champion", 2: "rejected",
                                                                                       3: "rejected"}
        n = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE event_id = :e"), {"e": first}).scalar()
    assert first == again and n == 1
