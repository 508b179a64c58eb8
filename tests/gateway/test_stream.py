"""WebSocket /api/v1/stream: the token as first message, scope read, then what lands in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from starlette.websockets import WebSocketDisconnect

from tests.gateway.conftest import login, new_user

pytestmark = pytest.mark.timeout(60)


def _refused(client, hello) -> tuple[dict, int]:
    with client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json(hello)
        error = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    return error, closed.value.code


def test_the_stream_needs_a_valid_token_with_scope_read(client, engine, tokens):
    from orchestration.gateway import users

    assert _refused(client, {"hello": 1}) == ({"type": "error", "error": 'the first message must be {"access_token": ...}'}, 1008)
    assert _refused(client, {"access_token": "x.y.z"}) == ({"type": "error", "error": "invalid token"}, 1008)
    owner = new_user(engine, "trader")
    key, secret = users.create_api_key(engine, owner, "trade-only", ["trade"])
    token = client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": key.key_id,
                                                    "client_secret": secret}).json()["access_token"]
    error, code = _refused(client, {"access_token": token})
    assert error["error"] == "forbidden: needs scope read" and code == 1008
    error, code = _refused(client, {"access_token": tokens["viewer"], "topics": ["secrets"]})
    assert "topics some of" in error["error"] and code == 1008


def test_fills_positions_risk_and_alerts_arrive_as_they_land(client, engine):
    account = f"ws-{uuid.uuid4().hex[:8]}"
    t0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO positions (account, strategy, symbol, quantity, avg_price, updated_at)"
                             " VALUES (:a, 's', 'BTC/USDT', 1, 100, :t)"), {"a": account, "t": t0})
    viewer = new_user(engine, "viewer")
    token = login(client, viewer).json()["access_token"]
    with client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"access_token": token, "account": account})
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["subject"] == viewer and hello["account"] == account
        assert [(e["type"], e["data"]["quantity"]) for e in hello["snapshot"]] == [("position", "1")]
        with engine.begin() as conn:
            conn.execute(sa.text("""
                INSERT INTO trades (fill_id, client_order_id, account, strategy, exchange, symbol, side, price,
                                    quantity, fee, fee_currency, liquidity, ts)
                VALUES (:f, 'c1', :a, 's', 'sim', 'BTC/USDT', 'buy', 101, 0.5, 0, 'USDT', 'taker', :t)
            """), {"f": f"{account}-f1", "a": account, "t": t0 + timedelta(minutes=1)})
            conn.execute(sa.text("UPDATE positions SET quantity = 1.5, updated_at = :t WHERE account = :a"),
                         {"a": account, "t": t0 + timedelta(minutes=1)})
            conn.execute(sa.text("INSERT INTO risk_metrics (ts, account, scope, metric, value)"
                                 " VALUES (:t, :a, 'account', 'equity', 100050)"),
                         {"a": account, "t": t0 + timedelta(minutes=1)})
            conn.execute(sa.text("INSERT INTO audit_log (event_id, actor, action, scope, reason)"
                                 " VALUES (:e, 'risk', 'state_change', :s, 'drawdown breaker')"),
                         {"e": f"{account}-e1", "s": f"account:{account}"})
        got: dict[str, dict] = {}
        while len(got) < 4:
            event = ws.receive_json()
            got[event["type"]] = event["data"]
        assert got["fill"]["fill_id"] == f"{account}-f1" and got["fill"]["price"] == "101"
        assert got["position"]["quantity"] == "1.5"
        assert got["risk"]["metrics"][0]["value"] == "100050"
        assert got["alert"]["reason"] == "drawdown breaker"


def test_the_stream_closes_when_the_user_is_disabled(client, engine):
    from orchestration.gateway import users

    name = new_user(engine, "viewer")
    token = login(client, name).json()["access_token"]
    with client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"access_token": token})
        assert ws.receive_json()["type"] == "hello"
        users.set_disabled(engine, name)
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
    assert closed.value.code == 1008 and closed.value.reason == "identity disabled or revoked"
