"""Operator actions -- kill switch, resume, strategy swap, limit changes, manual orders and cancels -- from the
``control`` topic or POST /control/{action}: accepted only as envelopes signed with the ``control-signing`` key
(streaming/signing.py), applied to the Trader, written to audit_log (the verified identity and source, why),
effects flushed.

Whatever is not a valid, fresh, first-seen envelope is refused: counted (tradeloop_control_refused_total{reason})
and written to audit_log as ``control_refused`` -- nothing applied; at most settings.control_refused_audit_rows
rows per reason and window, the rest summarised (streaming/refusals.py says why). A replay is caught by the
in-memory nonce cache within the age window and, across a worker restart, by the applied command's audit row:
its event id is derived from the nonce and its ts is the signed ts, so one primary-key lookup finds it.

Swaps and limit changes are also kept in ``stream_runtime`` (storage/releases.py), in the audit row's
transaction, so that a restarted worker comes back with them (streaming/releases.py restores them); a
kill switch is restored from its audit row.

A manual order takes the strategies' path (Trader.manual_order: the risk engine, then the OMS) under the slot
``manual``; a cancel goes through the OMS. Both are flushed (stored, published) before their audit row, which
names the verified identity and the client order id: the order's attribution to the operator."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import orjson

from streaming import metrics, signing
from streaming import records as rec
from streaming import wiring
from streaming.app import settings, worker
from streaming.outbox import flush
from streaming.refusals import RefusalBudget, Window
from trading.oms.manual import MANUAL, ManualOrderError, ManualOrderRefused, not_cancellable, parse_manual_order
from trading.oms.states import TERMINAL
from trading.risk.limits import merge_overrides

log = logging.getLogger(__name__)
ACTIONS = ("kill_switch", "resume", "swap_strategy", "set_limits", "manual_order", "cancel")
ORDER_ACTIONS = ("manual_order", "cancel")
FINAL = frozenset(s.value for s in TERMINAL)
KEY_RELOAD_S = 10.0  # an unknown kid re-reads the key store at most this often (a rotated key is picked up)
NO_KEY_RELOAD_S = 0.1  # while no key could be read: soon again (one was just created; `up` creates it first)


class ControlError(ValueError):
    pass


class _Keys:
    """The verification keys (kid -> key), read from the secret provider on first use; none is fail closed:
    every message is refused as unknown_key until the key exists (`tradeloop up` generates it)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.loaded_at = float("-inf")
        self.error = ""

    async def get(self, force: bool = False) -> dict[str, bytes]:
        if (not self.keys or force) and time.monotonic() - self.loaded_at >= (KEY_RELOAD_S if self.keys else NO_KEY_RELOAD_S):
            from deploy.secrets import SecretsError, control_signing_key

            self.loaded_at = time.monotonic()
            try:
                kid, key = await asyncio.to_thread(control_signing_key, settings, False)
            except SecretsError as exc:  # one line, never the value
                if str(exc) != self.error:
                    log.warning("control messages are refused until the control-signing key can be read: %s", exc)
                self.error = str(exc)
            else:
                self.keys = {**self.keys, kid: key}
                self.error = ""
        return self.keys


KEYS = _Keys()
SEEN = signing.NonceCache()
BUDGET = RefusalBudget(settings.control_refused_audit_rows, settings.control_refused_window_s)
_SUMMARY_TASKS: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak references)


def event_id_of(nonce: str) -> str:
    """The audit event id of the command with this nonce (the persistent half of the replay check)."""
    from trading.records import stable_id

    return stable_id("control", nonce)


async def receive(raw: bytes, transport: str, *, url_action: str | None = None,
                  refusal_id: tuple = (), refusal_ts_ns: int | None = None) -> dict:
    """Verify one control message and apply it. ``transport``: where it came in (``topic:<name>`` or
    ``http:<peer>``), the refusal's audit source. ``refusal_id``/``refusal_ts_ns``: what identifies this
    delivery, so that a redelivered refusal adds no second row. Raises ControlRefused (counted and audited
    here) or ControlError (verified, but not applicable)."""
    await wiring.start_trader(worker, settings)  # the store, for the replay check and the audit rows
    envelope: Any = None
    try:
        envelope = signing.decode(raw)
        verified = await _verify(envelope)
        event_id = event_id_of(verified.nonce)
        if await asyncio.to_thread(worker.store.run, lambda conn: _applied(conn, event_id, verified.ts)):
            raise signing.ControlRefused("replayed", "this command was already applied (audit_log)",
                                         verified.identity)
    except signing.ControlRefused as refused:
        await _refused(refused, envelope, transport, raw, refusal_id, refusal_ts_ns)
        raise
    body = verified.body
    action = str(body.get("action", ""))
    if url_action is not None and url_action.replace("-", "_") != action:
        raise ControlError(f"the URL's action {url_action!r} is not the signed body's {action!r}")
    if not isinstance(body.get("account"), str) or not body["account"]:
        raise ControlError("a control message needs its `account`")
    cmd = rec.Control(
        command_id=event_id, action=action, account=body["account"], who=verified.identity,
        reason=str(body.get("reason", "")), flatten=bool(body.get("flatten", False)), slot=str(body.get("slot", "")),
        strategy=str(body.get("strategy", "")), params=orjson.dumps(body.get("params", {})).decode(), ts=verified.ts,
        symbol=_text(body.get("symbol")), side=_text(body.get("side")), quantity=_text(body.get("quantity")),
        order_type=_text(body.get("order_type")), price=_text(body.get("price")),
        client_order_id=_text(body.get("client_order_id")))
    return await apply_control(cmd, source=verified.source, transport=transport, kid=verified.kid)


def _text(value: Any) -> str:
    """A body field as the record's text ("" when absent); numbers keep their JSON spelling (exact decimals)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


async def _verify(envelope: Any) -> signing.Verified:
    def attempt(keys: dict) -> signing.Verified:
        return signing.verify(envelope, keys, now_ns=time.time_ns(), max_age_s=settings.control_max_age_s, seen=SEEN)

    try:
        return attempt(await KEYS.get())
    except signing.ControlRefused as refused:
        if refused.reason != "unknown_key":
            raise
        retry = await KEYS.get(force=True)
        if KEYS.error and not retry:
            raise signing.ControlRefused("unknown_key", "this worker cannot read the control-signing key") from None
        return attempt(retry)


def _applied(conn, event_id: str, ts_ns: int) -> bool:
    from storage.stream import ts_of

    return conn.exec_driver_sql("SELECT 1 FROM audit_log WHERE event_id = %s AND ts = %s",
                                (event_id, ts_of(ts_ns))).first() is not None


def _claimed(envelope: Any) -> dict:
    """What an unverified message says about itself, cut short: for the reader of the audit row, not trusted."""
    if not isinstance(envelope, dict):
        return {"type": type(envelope).__name__}
    out: dict = {}
    for name in ("identity", "source", "kid", "who"):
        if isinstance(envelope.get(name), str):
            out[name] = envelope[name][:64]
    body = envelope.get("body") if isinstance(envelope.get("body"), dict) else envelope
    if isinstance(body.get("action"), str):
        out["action"] = body["action"][:64]
    return out


async def _refused(refused: signing.ControlRefused, envelope: Any, transport: str, raw: bytes, refusal_id: tuple,
                   refusal_ts_ns: int | None) -> None:
    from storage.stream import write_audit
    from trading.records import stable_id

    metrics.CONTROL_REFUSED.labels(refused.reason).inc()  # every refusal, audited one by one or not
    write, closed = BUDGET.admit(refused.reason, transport)
    if closed is not None:
        await _summarise(closed)
    if not write:
        if BUDGET.windows[refused.reason].suppressed == 1:  # the first one not audited: summarise at window end
            _schedule_summary(refused.reason)
        return
    ts = refusal_ts_ns or time.time_ns()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    event_id = stable_id("control_refused", refused.reason, transport, digest, *(refusal_id or (ts,)))
    details = {"detail": refused.detail, "transport": transport, "claimed": _claimed(envelope), "sha256": digest}
    log.warning("control refused (%s) from %s: %s", refused.reason, transport, refused.detail)
    await asyncio.to_thread(worker.store.run, lambda conn: write_audit(
        conn, event_id, ts, refused.identity or "unauthenticated", "control_refused", f"account:{settings.account}",
        refused.reason, details, identity=refused.identity, source=transport))


def _schedule_summary(reason: str) -> None:
    """Summarise the reason's window when it closes, even if no further refusal comes to close it."""
    async def later() -> None:
        window = BUDGET.windows.get(reason)
        while window is not None and BUDGET.windows.get(reason) is window:
            await asyncio.sleep(BUDGET.seconds_left(reason) + 0.01)
            for w in BUDGET.due():
                await _summarise(w)

    task = asyncio.ensure_future(later())
    _SUMMARY_TASKS.add(task)
    task.add_done_callback(_SUMMARY_TASKS.discard)


async def _summarise(w: Window) -> None:
    """One audit row (and log line) for the refusals of a closed window that were counted, not written."""
    from storage.stream import write_audit
    from trading.records import stable_id

    details = {"suppressed": w.suppressed, "audited": w.written, "window_s": settings.control_refused_window_s,
               "transports": dict(w.transports)}
    log.warning("control refused (%s): %d more refusals in %gs counted, not audited one by one (%s)", w.reason,
                w.suppressed, settings.control_refused_window_s, dict(w.transports))
    try:
        await asyncio.to_thread(worker.store.run, lambda conn: write_audit(
            conn, stable_id("control_refused_summary", w.reason, w.wall_start_ns), w.wall_start_ns, "unauthenticated",
            "control_refused_summary", f"account:{settings.account}", w.reason, details, source="worker"))
    except Exception:  # noqa: BLE001 -- the metric has counted them; a summary row lost is said in the log
        log.exception("the summary of refused control messages (%s) was not written", w.reason)


async def apply_control(cmd: rec.Control, *, source: str, transport: str, kid: str) -> dict:
    """Apply one verified operator action to the trader, write it to audit_log (who -- the verified identity --,
    from where, why), flush its effects. Only ``receive`` calls this, with a verified command."""
    trader = await wiring.start_trader(worker, settings)
    if cmd.account != trader.account:
        raise ControlError(f"control for account {cmd.account!r}, this worker trades {trader.account!r}")
    if not cmd.who:
        raise ControlError("control action needs `who`")
    params = orjson.loads(cmd.params or "{}")
    if not isinstance(params, dict):
        raise ControlError("params must be a JSON object")
    if cmd.action in ORDER_ACTIONS:
        return await _order_action(trader, cmd, source=source, transport=transport, kid=kid)
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
    ts, event_id = cmd.ts, cmd.command_id
    details = {"flatten": cmd.flatten, "slot": cmd.slot, "strategy": cmd.strategy, "params": params,
               "transport": transport, "kid": kid}
    await asyncio.to_thread(worker.store.run, lambda conn: _record(conn, cmd, trader.account, params, event_id, ts,
                                                                   details, source))
    if cmd.action == "swap_strategy":
        worker.slot_overrides[cmd.slot] = ts  # newer than any release promoted so far: the slot stays swapped
    elif cmd.action == "set_limits":
        worker.limit_overrides = merge_overrides(worker.limit_overrides, params)
    await flush(trader)
    return {"ok": True, "action": cmd.action, "state": trader.state.value, "event_id": event_id}


def _record(conn, cmd: rec.Control, account: str, params: dict, event_id: str, ts: int, details: dict,
            source: str) -> None:
    """The audit row and, for swaps and limit changes, what a restarted worker restores: one transaction."""
    from storage import releases as rel
    from storage.stream import write_audit

    write_audit(conn, event_id, ts, cmd.who, cmd.action, f"account:{account}", cmd.reason, details,
                identity=cmd.who, source=source)
    if cmd.action == "swap_strategy":
        rel.save_slot(conn, account, cmd.slot, cmd.strategy, params, actor=cmd.who, reason=cmd.reason, ts_ns=ts)
    elif cmd.action == "set_limits":
        rel.save_limits(conn, account, merge_overrides(worker.limit_overrides, params), actor=cmd.who,
                        reason=cmd.reason, ts_ns=ts)


async def _order_action(trader, cmd: rec.Control, *, source: str, transport: str, kid: str) -> dict:
    """manual_order or cancel: applied, flushed (the order and its events stored), then audited -- refusals too,
    under the same event id, so a refused command replayed later is still a replay."""
    details: dict = {"transport": transport, "kid": kid}
    try:
        if cmd.action == "manual_order":
            order = parse_manual_order({"symbol": cmd.symbol, "side": cmd.side, "quantity": cmd.quantity,
                                        "order_type": cmd.order_type, "price": cmd.price})
            details.update(symbol=order.symbol, side=order.side.value, quantity=str(order.quantity),
                           order_type=order.order_type.value, price=None if order.price is None else str(order.price))
            cid = trader.manual_order(order, cmd.command_id).client_order_id
            details["strategy"] = MANUAL
        else:
            cid = cmd.client_order_id
            if not cid:
                raise ManualOrderError("a cancel needs the order's `client_order_id`")
            details["client_order_id"] = cid
            if trader.order_status(cid) is None:  # not held by the OMS (e.g. closed before a restart)
                stored = await asyncio.to_thread(worker.store.run, lambda conn: _stored_status(conn, trader.account,
                                                                                              cid))
                if stored in FINAL:
                    raise ManualOrderError(not_cancellable(cid, stored))
            trader.cancel_order(cid)
    except ManualOrderError as exc:
        details.update(outcome="refused", error=str(exc),
                       **({"risk_reason": exc.reason} if isinstance(exc, ManualOrderRefused) else {}))
        await _audit(cmd, trader.account, details, source)
        raise ControlError(str(exc)) from None
    await flush(trader)  # stored and published (an exchange's order is sent once its intent is committed)
    state = trader.order_status(cid)
    details.update(outcome="applied", client_order_id=cid, order_state=state)
    await _audit(cmd, trader.account, details, source)
    return {"ok": True, "action": cmd.action, "client_order_id": cid, "order_state": state,
            "state": trader.state.value, "event_id": cmd.command_id}


def _stored_status(conn, account: str, client_order_id: str) -> str | None:
    row = conn.exec_driver_sql("SELECT status FROM orders WHERE client_order_id = %s AND account = %s",
                               (client_order_id, account)).first()
    return None if row is None else row[0]


async def _audit(cmd: rec.Control, account: str, details: dict, source: str) -> None:
    from storage.stream import write_audit

    await asyncio.to_thread(worker.store.run, lambda conn: write_audit(
        conn, cmd.command_id, cmd.ts, cmd.who, cmd.action, f"account:{account}", cmd.reason, details,
        identity=cmd.who, source=source))
