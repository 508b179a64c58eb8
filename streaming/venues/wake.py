"""Waking an adapter's sender task from any thread: the adapters' submit/cancel queue a request and call this."""

from __future__ import annotations

import asyncio


def wake(loop: asyncio.AbstractEventLoop | None, event: asyncio.Event | None) -> None:
    """Set ``event`` on ``loop`` (directly when called on that loop, else thread-safely); nothing before the
    adapter has started (its sender takes the queue when it starts)."""
    if loop is None or event is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        event.set()
    else:
        loop.call_soon_threadsafe(event.set)
