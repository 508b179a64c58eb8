"""A batch's effects leave the worker here: stored in Postgres (the system of record) first, then published.

The agent acknowledges its ticks only after ``flush`` returns, so a crash anywhere before that replays
the ticks, and replayed effects are idempotent (stable ids, ``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from streaming import metrics
from streaming import records as rec
from streaming.app import out, worker

if TYPE_CHECKING:
    from streaming.trader import Trader


async def flush(trader: Trader) -> None:
    """Write the trader's effects to Postgres (retrying while it is down), then publish them."""
    async with worker.lock:
        batch = trader.drain()
        if not (batch or batch.positions):
            return
        store = worker.store
        t0 = time.perf_counter()
        await asyncio.to_thread(store.write, batch)
        trader.release()  # committed: the OMS may now send the orders it held for that (an exchange's)
        metrics.BATCH_WRITE_SECONDS.observe(time.perf_counter() - t0)
        metrics.STORE_RETRIES.set(store.retries)
        acct = trader.account
        key = acct.encode()
        for b in batch.bars:
            await out.bars.send(key=b.symbol.encode(), value=rec.to_record(b))
        for s in batch.signals:
            await out.signals.send(key=s.symbol.encode(), value=rec.Signal(
                s.signal_id, acct, s.strategy, s.symbol, s.target, s.ts, s.model_name, s.model_version,
                s.score, s.shadow))
        for o in batch.orders:
            await out.orders.send(key=key, value=rec.to_record(o))
        for e in batch.events:
            metrics.ORDERS.labels(e.status.value).inc()
            await out.events.send(key=key, value=rec.to_record(e))
        for f in batch.fills:
            metrics.FILLS.inc()
            await out.fills.send(key=key, value=rec.to_record(f))
        for p in batch.positions:
            await out.positions.send(key=key, value=rec.to_record(p))
        for t in batch.transitions:
            await out.alerts.send(key=key, value=rec.RiskAlert(
                acct, t.scope, t.old.value, t.new.value, t.reason, t.who, t.ts))
        update_gauges(trader)


def update_gauges(trader: Trader) -> None:
    """The metrics that are read off the Trader rather than counted as they happen."""
    seen = worker.rejects_seen
    for reason, n in trader.engine.rejected.items():
        if n > seen.get(reason, 0):
            metrics.REJECTS.labels(reason).inc(n - seen.get(reason, 0))
            seen[reason] = n
    p = trader.portfolio
    metrics.PNL.labels("realized").set(float(p.realized_pnl))
    metrics.PNL.labels("unrealized").set(float(p.unrealized_pnl()))
    metrics.PNL.labels("equity").set(float(p.equity()))
    metrics.STATE.set({"active": 0, "reducing": 1, "halted": 2}[trader.state.value])
    for slot, strat in trader.ml_strategies().items():
        for m in strat.models():
            st = m.status
            metrics.MODEL_VERSION.labels(slot, m.alias).set(float(st["version"] or 0))
            metrics.MODEL_WARNING.labels(slot, m.alias).set(1.0 if st["warning"] else 0.0)
    for slot, strat in trader.model_driven_strategies().items():  # model- and weights-backed slots
        metrics.MODEL_FLAT.labels(slot).set(1.0 if strat.flat_reason else 0.0)
    for slot, strat in trader.weights_strategies().items():
        metrics.WEIGHTS_AGE.labels(slot).set(strat.weights_age_hours())
    metrics.VAR_SCENARIOS.set(float(trader.scenarios.get("count", 0)))
