"""Read endpoints on rows written to the real database: filters, pagination, validation, injection-looking
values, the risk view and MLflow being away."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.gateway.conftest import bearer

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def account(engine) -> str:
    """An account of its own with 7 orders, 7 fills, 2 positions, risk metrics and audit rows."""
    acct = f"acct-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        for i in range(7):
            side = "buy" if i % 2 == 0 else "sell"
            symbol = "BTC/USDT" if i < 5 else "ETH/USDT"
            ts = T0 + timedelta(minutes=i)
            conn.execute(sa.text("""
                INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type, quantity,
                                    time_in_force, status, filled_quantity, created_at, updated_at)
                VALUES (:c, :a, 'sma', 'sim', :s, :side, 'market', 0.5, 'gtc', 'filled', 0.5, :ts, :ts)
            """), {"c": f"{acct}-o{i}", "a": acct, "s": symbol, "side": side, "ts": ts})
            conn.execute(sa.text("""
                INSERT INTO trades (fill_id, client_order_id, account, strategy, exchange, symbol, side, price,
                                    quantity, fee, fee_currency, liquidity, ts)
                VALUES (:f, :c, :a, 'sma', 'sim', :s, :side, 100.25, 0.5, 0.01, 'USDT', 'taker', :ts)
            """), {"f": f"{acct}-f{i}", "c": f"{acct}-o{i}", "a": acct, "s": symbol, "side": side, "ts": ts})
        conn.execute(sa.text("""
            INSERT INTO positions (account, strategy, symbol, quantity, avg_price, updated_at) VALUES
            (:a, 'sma', 'BTC/USDT', 0.5, 100.25, :ts), (:a, 'sma', 'ETH/USDT', 0, 0, :ts)
        """), {"a": acct, "ts": T0})
        conn.execute(sa.text("""
            INSERT INTO risk_metrics (ts, account, scope, metric, value) VALUES
            (:old, :a, 'account', 'equity', 90000), (:ts, :a, 'account', 'equity', 100000.5),
            (:ts, :a, 'account', 'gross_exposure', 50.25)
        """), {"a": acct, "ts": T0, "old": T0 - timedelta(minutes=5)})
        conn.execute(sa.text("""
            INSERT INTO audit_log (event_id, ts, actor, action, scope, reason) VALUES
            (:e1, :ts, 'alice', 'kill_switch', :scope, 'drill'), (:e2, :ts, 'bob', 'resume', :scope, '')
        """), {"e1": f"{acct}-e1", "e2": f"{acct}-e2", "ts": T0, "scope": f"account:{acct}"})
    return acct


def test_orders_filters_and_pages(client, tokens, account):
    auth = bearer(tokens["viewer"])
    first = client.get("/api/v1/orders", params={"account": account, "limit": 3}, headers=auth).json()
    assert [o["client_order_id"] for o in first["items"]] == [f"{account}-o{i}" for i in (6, 5, 4)]
    assert first["next_offset"] == 3 and first["items"][0]["quantity"] == "0.5"  # exact decimals, as text
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/api/v1/orders", params={"account": account, "limit": 3, "offset": offset},
                          headers=auth).json()
        pages += page["items"]
        offset = page["next_offset"]
    assert len(pages) == 7 and len({p["client_order_id"] for p in pages}) == 7
    sells = client.get("/api/v1/orders", params={"account": account, "side": "sell", "symbol": "BTC/USDT"},
                       headers=auth).json()["items"]
    assert {o["client_order_id"] for o in sells} == {f"{account}-o1", f"{account}-o3"}
    window = client.get("/api/v1/orders", params={"account": account, "since": (T0 + timedelta(minutes=2)).isoformat(),
                                                  "until": (T0 + timedelta(minutes=4)).isoformat()}, headers=auth)
    assert [o["client_order_id"] for o in window.json()["items"]] == [f"{account}-o3", f"{account}-o2"]


def test_fills_positions_accounts_audit(client, tokens, account):
    auth = bearer(tokens["viewer"])
    fills = client.get("/api/v1/fills", params={"account": account, "symbol": "ETH/USDT"}, headers=auth).json()
    assert [f["fill_id"] for f in fills["items"]] == [f"{account}-f6", f"{account}-f5"]
    assert fills["items"][0]["price"] == "100.25" and fills["next_offset"] is None
    pos = client.get("/api/v1/positions", params={"account": account, "open_only": True}, headers=auth).json()
    assert [(p["symbol"], p["quantity"]) for p in pos["items"]] == [("BTC/USDT", "0.5")]
    accts = client.get("/api/v1/accounts", headers=auth).json()["items"]
    mine = [a for a in accts if a["account"] == account]
    assert mine == [{"account": account, "open_positions": 1, "open_orders": 0}]
    audit = client.get("/api/v1/audit", params={"scope": f"account:{account}", "actor": "alice"}, headers=auth).json()
    assert [(a["action"], a["reason"]) for a in audit["items"]] == [("kill_switch", "drill")]


def test_risk_takes_the_latest_metrics_and_the_worker_view(client, tokens, account):
    auth = bearer(tokens["viewer"])
    got = client.get("/api/v1/risk", params={"account": account}, headers=auth).json()
    assert {(m["metric"], m["value"]) for m in got["metrics"]} == {("equity", "100000.5"), ("gross_exposure", "50.25")}
    assert got["worker"] is None  # another account than the worker's
    configured = client.get("/api/v1/risk", headers=auth).json()
    assert configured["account"] == "paper" and configured["worker"] == {"account": "paper", "state": "ok"}


def test_bad_filters_are_422_with_a_clear_message(client, tokens):
    auth = bearer(tokens["viewer"])
    too_many = client.get("/api/v1/orders", params={"limit": 501}, headers=auth)
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "invalid request: query.limit: Input should be less than or equal to 500"
    side = client.get("/api/v1/fills", params={"side": "short"}, headers=auth)
    assert side.status_code == 422 and side.json()["error"].startswith("invalid request: query.side: Input should be")
    when = client.get("/api/v1/orders", params={"since": "yesterday"}, headers=auth)
    assert when.status_code == 422 and "query.since" in when.json()["error"]
    unknown = client.get("/api/v1/orders", params={"acount": "paper"}, headers=auth)
    assert unknown.status_code == 422 and "query.acount: Extra inputs are not permitted" in unknown.json()["error"]
    negative = client.get("/api/v1/positions", params={"offset": -1}, headers=auth)
    assert negative.status_code == 422
    # the refused value is not echoed back
    assert "short" not in side.text.replace("Input should be", "")


INJECTIONS = ["paper' OR '1'='1", "paper; DROP TABLE orders; --", "x') UNION SELECT password_hash FROM users --",
              "%' OR 1=1 --"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_looking_filters_are_harmless(client, tokens, engine, account, value):
    auth = bearer(tokens["viewer"])
    with engine.connect() as conn:  # `account` stored orders; other tests may add more: compare with before
        orders = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar()
    assert orders > 0
    # names with quotes or spaces are not names: refused before any SQL
    assert client.get("/api/v1/orders", params={"account": value}, headers=auth).status_code == 422
    # a free-text filter takes the value as data: no rows match, nothing breaks
    resp = client.get("/api/v1/audit", params={"scope": value}, headers=auth)
    assert resp.status_code == 200 and resp.json()["items"] == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar() == orders
        assert conn.execute(sa.text("SELECT to_regclass('users') IS NOT NULL")).scalar()


def test_releases_and_models_read_the_store(client, tokens, engine, account):
    from storage import releases as rel

    with engine.begin() as conn:
        rel.create_release(conn, account, "sma_cross", {"fast": 5, "slow": 20}, {}, source="test")
    auth = bearer(tokens["viewer"])
    got = client.get("/api/v1/strategies/releases", params={"account": account}, headers=auth).json()
    assert [(r["strategy"], r["version"], r["status"]) for r in got["items"]] == [("sma_cross", 1, "candidate")]
    assert got["items"][0]["params"] == {"fast": 5, "slow": 20}
    assert client.get("/api/v1/strategies/running", params={"account": account},
                      headers=auth).json() == {"account": account, "strategies": {}}
    models = client.get("/api/v1/models", params={"model_name": f"m-{account}"}, headers=auth).json()
    assert models == {"model_name": f"m-{account}", "versions": []}


def test_model_aliases_without_mlflow_is_a_clear_503(client, tokens):
    resp = client.get("/api/v1/models/aliases", headers=bearer(tokens["viewer"]))
    assert resp.status_code == 503
    assert resp.json() == {"error": "the MLflow registry is unreachable: model aliases are not available"}


def test_pipeline_runs_without_dagster_is_a_clear_503(client, tokens):
    resp = client.get("/api/v1/pipeline/runs", headers=bearer(tokens["viewer"]))
    assert resp.status_code == 503
    assert resp.json() == {"error": "the Dagster webserver is unreachable: pipeline runs are not available"}


def test_the_pipeline_runs_query_is_valid_for_this_dagster():
    # checked against Dagster's own GraphQL schema, so a renamed field fails here rather than in production
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    from orchestration.gateway.routes.read import RUNS_QUERY

    assert validate(create_schema().graphql_schema, parse(RUNS_QUERY)) == []
