"""WebSocket /api/v1/stream (scope ``read``): an account's fills, positions, risk metrics and alerts as they land
in PostgreSQL.

The access token is the first message, ``{"access_token": "...", "account": "...", "topics": [...]}``, within 5 s:
a browser cannot set headers on a WebSocket, and a token in the URL would end up in access logs. Then a snapshot
(positions, latest risk) and, every POLL_S, what is new: ``{"type": "fill"|"position"|"risk"|"alert", "data": ...}``.
The socket closes (1008) when the token expires or the identity is disabled or revoked: reconnect with a new token.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from orchestration.gateway.routes.read import _rows
from orchestration.gateway.security import authenticate

router = APIRouter(tags=["stream"])
TOPICS = ("fills", "positions", "risk", "alerts")
POLL_S = 0.5
AUTH_TIMEOUT_S = 5.0
ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,64}$")
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# open streams per identity in one gateway process: each polls PostgreSQL every POLL_S, so an unbounded number
# from one token would be an unbounded load (OWASP API4)
MAX_STREAMS_PER_IDENTITY = 5


def _since(conn: sa.Connection, account: str, topics: set[str], last: dict[str, datetime]) -> list[dict]:
    out: list[dict] = []
    if "fills" in topics:
        for row in _rows(conn.execute(sa.text("""
                SELECT fill_id, client_order_id, strategy, symbol, side, price, quantity, fee, fee_currency, ts, mode
                FROM trades WHERE account = :a AND ts > :t ORDER BY ts LIMIT 500"""),
                {"a": account, "t": last["fills"]})):
            out.append({"type": "fill", "data": row})
    if "positions" in topics:
        for row in _rows(conn.execute(sa.text("""
                SELECT strategy, symbol, quantity, avg_price, realized_pnl, fees, updated_at FROM positions
                WHERE account = :a AND updated_at > :t ORDER BY updated_at LIMIT 500"""),
                {"a": account, "t": last["positions"]})):
            out.append({"type": "position", "data": row})
    if "risk" in topics:
        rows = _rows(conn.execute(sa.text("""
                SELECT scope, metric, value, ts FROM risk_metrics
                WHERE account = :a AND ts = (SELECT max(ts) FROM risk_metrics WHERE account = :a AND ts > :t)"""),
                {"a": account, "t": last["risk"]}))
        if rows:
            out.append({"type": "risk", "data": {"ts": rows[0]["ts"], "metrics": rows}})
    if "alerts" in topics:
        for row in _rows(conn.execute(sa.text("""
                SELECT event_id, ts, actor, action, scope, reason FROM audit_log
                WHERE ts > :t AND (scope = :s OR action = 'weights_stale') ORDER BY ts LIMIT 500"""),
                {"s": f"account:{account}", "t": last["alerts"]})):
            out.append({"type": "alert", "data": row})
    return out


def _advance(last: dict[str, datetime], events: list[dict]) -> None:
    field = {"fill": ("fills", "ts"), "position": ("positions", "updated_at"), "risk": ("risk", "ts"),
             "alert": ("alerts", "ts")}
    for event in events:
        topic, column = field[event["type"]]
        seen = datetime.fromisoformat(event["data"][column])
        if seen > last[topic]:
            last[topic] = seen


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    gw = websocket.app.state.gateway
    await websocket.accept()
    try:
        hello = await asyncio.wait_for(websocket.receive_json(), AUTH_TIMEOUT_S)
        if not isinstance(hello, dict) or not isinstance(hello.get("access_token"), str):
            raise ValueError("the first message must be {\"access_token\": ...}")
        identity = await run_in_threadpool(authenticate, websocket, hello["access_token"])
        if "read" not in identity.scopes or identity.must_change:
            raise HTTPException(403, "forbidden: needs scope read")
        account = hello.get("account") or gw.settings.account
        topics = set(hello.get("topics") or TOPICS)
        if not isinstance(account, str) or not ACCOUNT_RE.match(account) or not topics <= set(TOPICS):
            raise ValueError(f"account must be a plain name and topics some of {', '.join(TOPICS)}")
        if not identity.may_see(account):
            raise HTTPException(403, f"forbidden: no access to account {account!r}")
    except (asyncio.TimeoutError, ValueError, TypeError, KeyError, HTTPException, WebSocketDisconnect) as exc:
        reason = exc.detail if isinstance(exc, HTTPException) else (
            "no access token within 5 s" if isinstance(exc, asyncio.TimeoutError) else
            "bad first message" if isinstance(exc, TypeError) else str(exc) or "bad first message")
        if not isinstance(exc, WebSocketDisconnect):
            await websocket.send_json({"type": "error", "error": reason})
            await websocket.close(POLICY_VIOLATION, reason[:120])
        return
    streams = getattr(websocket.app.state, "open_streams", None)
    if streams is None:
        streams = websocket.app.state.open_streams = {}
    who = identity.kind + ":" + identity.subject
    if streams.get(who, 0) >= MAX_STREAMS_PER_IDENTITY:  # no await between this check and the count below
        reason = f"too many open streams for this identity (at most {MAX_STREAMS_PER_IDENTITY})"
        await websocket.send_json({"type": "error", "error": reason})
        await websocket.close(TRY_AGAIN_LATER, reason)
        return
    streams[who] = streams.get(who, 0) + 1
    try:
        await _serve(websocket, gw, identity, account, topics)
    finally:
        streams[who] -= 1


async def _serve(websocket: WebSocket, gw, identity, account: str, topics: set[str]) -> None:
    def snapshot() -> tuple[list[dict], dict[str, datetime]]:
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        with gw.engine.connect() as conn:
            # new fills and alerts are those after the newest stored one (fills carry the venue's or the sim's
            # time, not the wall clock's); positions and risk start with their current state
            newest = conn.execute(sa.text("""
                SELECT (SELECT max(ts) FROM trades WHERE account = :a),
                       (SELECT max(ts) FROM audit_log WHERE scope = :s OR action = 'weights_stale')"""),
                {"a": account, "s": f"account:{account}"}).one()
            last = {"fills": newest[0] or epoch, "positions": epoch, "risk": epoch, "alerts": newest[1] or epoch}
            events = _since(conn, account, topics & {"positions", "risk"}, last)
        _advance(last, events)
        return events, last

    def poll(last: dict[str, datetime]) -> list[dict]:
        with gw.engine.connect() as conn:
            return _since(conn, account, topics, last)

    events, last = await run_in_threadpool(snapshot)
    await websocket.send_json({"type": "hello", "account": account, "topics": sorted(topics),
                               "subject": identity.subject, "snapshot": events})
    try:
        while True:
            if time.time() >= identity.expires_at:
                await websocket.close(POLICY_VIOLATION, "token expired")
                return
            if gw.is_denied(identity.jti) or not await run_in_threadpool(gw.is_active, identity.kind,
                                                                         identity.subject):
                await websocket.close(POLICY_VIOLATION, "identity disabled or revoked")
                return
            events = await run_in_threadpool(poll, last)
            _advance(last, events)
            for event in events:
                await websocket.send_json(event)
            await asyncio.sleep(POLL_S)
    except WebSocketDisconnect:
        return
