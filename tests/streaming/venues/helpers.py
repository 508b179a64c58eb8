"""Shared by the venue adapter tests: wait on poll() for events, read them, read a metric."""

from __future__ import annotations

import asyncio
import time

from trading.records import Fill, OrderEvent


async def until(venue, done, timeout=5.0, events=None):
    """Poll the venue until ``done(events)``; returns every event seen."""
    events = [] if events is None else events
    deadline = time.monotonic() + timeout
    while True:
        events.extend(venue.poll())
        if done(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; events so far: {[short(e) for e in events]}")
        await asyncio.sleep(0.02)


def short(e):
    return ("fill", str(e.quantity)) if isinstance(e, Fill) else (e.status.value, str(e.filled_quantity), e.reason)


def final(cid):
    return lambda evs: any(isinstance(e, OrderEvent) and e.client_order_id == cid and not e.status.is_open
                           for e in evs)


def status_of(events, cid):
    return [e.status for e in events if isinstance(e, OrderEvent) and e.client_order_id == cid]


def counter(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()
