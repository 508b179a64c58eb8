"""Strategy releases and run-time changes in the worker: restored at start, followed while running.

At start (streaming.wiring, before the warm-up) a worker puts back what was changed at run time -- an
operator's strategy swaps per slot and limit changes (``stream_runtime``) -- and then the live release of
each slot's strategy (``strategy_releases``).  The newest decision wins: a release promoted after an
operator's swap of a slot replaces it; an operator's swap after the promotion stays.  A strategy the
stream runs that has no release yet is recorded as release v1 (the parameters it runs), so that the
release gate always has a running release to beat.

While running, ``refresh`` (a timer, every ``release_poll_interval_s``) reads the live and shadow releases
in a thread and swaps a slot to a newly promoted (or rolled-back-to) release between events -- no restart
-- and starts or stops a candidate's shadow beside it.  Every swap the stream makes is an audit_log row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.state import WorkerState
    from streaming.store import Store
    from streaming.trader import Trader

log = logging.getLogger(__name__)
ACTOR = "stream"


def releasable(trader: Trader) -> dict[str, Any]:
    """Slot -> tap of the slots that run a registered rule-based strategy (ML and weights slots follow their
    model registry / target_weights instead)."""
    from trading.strategies import StrategyError, get_strategy

    out = {}
    for slot, tap in trader.engine.slots.items():
        if tap.model_backed or tap.weights_backed or tap._own:
            continue
        try:
            get_strategy(tap.inner.name)
        except StrategyError:
            continue
        out[slot] = tap
    return out


async def restore_runtime(worker: WorkerState, store: Store, trader: Trader) -> None:
    """Operator swaps and limit changes, then live releases, onto a freshly built Trader (before its warm-up)."""
    from storage import releases as rel

    account = trader.account
    rt = await asyncio.to_thread(store.run, lambda conn: rel.load_runtime(conn, account))
    for slot, (name, params, ts) in sorted(rt.slots.items()):
        if slot not in trader.engine.slots:
            log.warning("slot %s swapped at run time is not configured any more: not restored", slot)
            continue
        try:
            trader.swap_strategy(slot, name, params)
        except ValueError as exc:
            log.warning("slot %s: the run-time swap to %s %s cannot be restored: %s", slot, name, params, exc)
            continue
        worker.slot_overrides[slot] = ts
    if rt.limits:
        try:
            trader.set_limits(rt.limits)
            worker.limit_overrides = dict(rt.limits)
        except ValueError as exc:
            log.warning("the run-time limit changes %s cannot be restored: %s", rt.limits, exc)
    taps = releasable(trader)
    now = time.time_ns()

    def seed(conn):
        for slot, tap in taps.items():  # slot order: the first slot of a strategy gives its v1
            swapped = worker.slot_overrides.get(slot)
            # seeded from an operator's swap, v1 dates from the swap: not a newer decision than the swap
            rel.seed_release(conn, account, tap.inner.name, dict(tap.inner.p), actor=ACTOR, now_ns=swapped or now,
                             reason="parameters of an operator's swap" if swapped else
                             "configured parameters of the stream")
        return rel.running(conn, account)

    running = await asyncio.to_thread(store.run, seed)
    for slot, tap in taps.items():
        live = running.get(tap.inner.name, {}).get("live")
        if live is not None:
            _follow(worker, trader, slot, tap, live, audit=False)
    if rt.slots or rt.limits:
        log.info("restored run-time changes: slots %s, limit overrides %s", sorted(worker.slot_overrides), rt.limits)


def _follow(worker: WorkerState, trader: Trader, slot: str, tap: Any, live: Any, *, audit: bool) -> bool:
    """Swap ``slot`` to the live release unless an operator's swap is newer.  True if the slot changed."""
    if tap.release == live.version:
        return False
    if worker.slot_overrides.get(slot, 0) >= live.promoted_ns:
        return False  # the operator's swap of this slot is the newer decision
    try:
        same = type(tap.inner).validate_params(dict(live.params)) == tap.inner.p
    except ValueError:
        same = False
    if same and tap.inner.name == live.strategy:
        tap.release = live.version  # already runs these parameters (e.g. release v1 seeded from them)
        tap.version = f"r{live.version}"
        return False
    before = {"strategy": tap.inner.name, "params": dict(tap.inner.p), "release": tap.release}
    try:
        trader.swap_strategy(slot, live.strategy, live.params, release=live.version)
    except ValueError as exc:
        log.error("slot %s cannot run %s release v%d %s: %s", slot, live.strategy, live.version, live.params, exc)
        return False
    worker.slot_overrides.pop(slot, None)
    log.info("slot %s now runs %s release v%d %s", slot, live.strategy, live.version, live.params)
    if audit:
        worker.pending_audit.append(("release_applied", slot, {"release": live.version, "params": live.params,
                                                                "before": before}))
    return True


async def refresh(worker: WorkerState) -> None:
    """Follow promotions, rollbacks and shadows (the timer's body); audit rows for what changed."""
    from storage import releases as rel
    from trading.records import stable_id

    trader, store = worker.trader, worker.store
    if trader is None or store is None:
        return
    taps = releasable(trader)
    if not taps:
        return
    running = await asyncio.to_thread(store.run, lambda conn: rel.running(conn, trader.account))
    for slot, tap in taps.items():
        entry = running.get(tap.inner.name, {})
        live = entry.get("live")
        if live is not None:
            _follow(worker, trader, slot, tap, live, audit=True)
            tap = trader.engine.slots[slot]
        shadow = entry.get("shadow")
        want = shadow.version if shadow is not None else None
        if tap.shadow_release != want:
            try:
                trader.set_shadow(slot, shadow.strategy if shadow else None, shadow.params if shadow else None, want)
            except ValueError as exc:
                log.error("slot %s cannot run %s v%s in shadow: %s", slot, tap.inner.name, want, exc)
                continue
            log.info("slot %s: shadow %s", slot, f"release v{want}" if want else "stopped")
            worker.pending_audit.append(("release_shadow_applied", slot, {"release": want}))
    if worker.pending_audit:
        now = time.time_ns()
        rows, worker.pending_audit = worker.pending_audit, []

        def write(conn):
            from storage.stream import write_audit

            for action, slot, details in rows:
                write_audit(conn, stable_id(action, trader.account, slot, now, str(details)), now, ACTOR, action,
                            f"account:{trader.account}/slot:{slot}", "release followed by the stream", details)

        await asyncio.to_thread(store.run, write)
