"""Operator actions -- kill switch, resume, strategy swap, limit changes -- from the ``control`` topic or
POST /control/{action}: applied to the Trader, written to audit_log (who, why), effects flushed.

Swaps and limit changes are also kept in ``stream_runtime`` (storage/releases.py), in the audit row's
transaction, so that a restarted worker comes back with them (streaming/releases.py restores them); a
kill switch is restored from its audit row."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from streaming import records as rec
from streaming import wiring
from streaming.app import settings, worker
from streaming.outbox import flush
from trading.risk.limits import merge_overrides

ACTIONS = ("kill_switch", "resume", "swap_strategy", "set_limits")


class ControlError(ValueError):
    pass


def from_http(action: str, body: Any) -> rec.Control:
    """The Control record of a POST /control/{action} with a JSON ``body``."""
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return rec.Control(
        command_id=str(body.get("command_id", "")), action=action.replace("-", "_"),
        account=str(body.get("account", settings.account)), who=str(body.get("who", "")),
        reason=str(body.get("reason", "")), flatten=bool(body.get("flatten", False)),
        slot=str(body.get("slot", "")), strategy=str(body.get("strategy", "")),
        params=orjson.dumps(body.get("params", {})).decode(), ts=time.time_ns())


async def apply_control(cmd: rec.Control) -> dict:
    """Apply one operator action to the trader, write it to audit_log (who, why), flush its effects."""
    from trading.records import stable_id

    trader = await wiring.start_trader(worker, settings)
    if cmd.account != trader.account:
        raise ControlError(f"control for account {cmd.account!r}, this worker trades {trader.account!r}")
    if not cmd.who:
        raise ControlError("control action needs `who`")
    params = orjson.loads(cmd.params or "{}")
    if not isinstance(params, dict):
        raise ControlError("params must be a JSON object")
    if cmd.action == "kill_switch":
        trader.kill_switch(cmd.reason or "operator", cmd.flatten, cmd.who)
    elif cmd.action == "resume":
        trader.resume(cmd.reason or "operator", cmd.who)
    elif cmd.action == "swap_strategy":
        trader.swap_strategy(cmd.slot, cmd.strategy, params)
    elif cmd.action == "set_limits":
        trader.set_limits(params)
    else:
        raise ControlError(f"unknown control action {cmd.action!r} ({', '.join(ACTIONS)})")
    ts = cmd.ts or time.time_ns()
    event_id = cmd.command_id or stable_id("control", cmd.action, cmd.who, ts)
    details = {"flatten": cmd.flatten, "slot": cmd.slot, "strategy": cmd.strategy, "params": params}
    await asyncio.to_thread(worker.store.run, lambda conn: _record(conn, cmd, trader.account, params, event_id, ts,
                                                                   details))
    if cmd.action == "swap_strategy":
        worker.slot_overrides[cmd.slot] = ts  # newer than any release promoted so far: the slot stays swapped
    elif cmd.action == "set_limits":
        worker.limit_overrides = merge_overrides(worker.limit_overrides, params)
    await flush(trader)
    return {"ok": True, "action": cmd.action, "state": trader.state.value, "event_id": event_id}


def _record(conn, cmd: rec.Control, account: str, params: dict, event_id: str, ts: int, details: dict) -> None:
    """The audit row and, for swaps and limit changes, what a restarted worker restores: one transaction."""
    from storage import releases as rel
    from storage.stream import write_audit

    write_audit(conn, event_id, ts, cmd.who, cmd.action, f"account:{account}", cmd.reason, details)
    if cmd.action == "swap_strategy":
        rel.save_slot(conn, account, cmd.slot, cmd.strategy, params, actor=cmd.who, reason=cmd.reason, ts_ns=ts)
    elif cmd.action == "set_limits":
        rel.save_limits(conn, account, merge_overrides(worker.limit_overrides, params), actor=cmd.who,
                        reason=cmd.reason, ts_ns=ts)
