"""What one worker process holds while it runs: its Trader, its store and whether it is ready.

One instance lives in streaming/app.py; the agents, timers, control actions and web pages read and set it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.store import Store
    from streaming.trader import Trader


@dataclass
class WorkerState:
    since: float = field(default_factory=time.time)  # process start (wall clock), for /health's uptime
    ready: bool = False  # the Trader is rebuilt from Postgres and trading
    error: str | None = None  # why the Trader could not be built (shown by /ready)
    trader: Trader | None = None
    store: Store | None = None
    # one flush at a time: the agent, the timers and control actions all flush the same Trader
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    building: asyncio.Future | None = None  # the one Trader build in progress (wiring.start_trader)
    scenarios_at: float = 0.0  # time.monotonic() of the last VaR scenario load (or failed load)
    rejects_seen: dict[str, int] = field(default_factory=dict)  # reject counts already in the metrics
    ignored_symbols: set[str] = field(default_factory=set)  # symbols of ticks skipped (not traded), logged once
    # run-time changes (streaming/releases.py): slot -> time (ns) of an operator's swap, which a release
    # promoted later replaces; the account's limit overrides as they stand (all set_limits merged)
    slot_overrides: dict[str, int] = field(default_factory=dict)
    limit_overrides: dict = field(default_factory=dict)
    # symbol -> open time (ns) of the newest market_data_clean bar the strategies were warmed up with
    history_marks: dict[str, int] = field(default_factory=dict)
    pending_audit: list = field(default_factory=list)  # (action, slot, details) of swaps the stream made
    # sandbox/live: the key the adapter trades with, the exchange adapter and its reconciler (paper: None)
    venue_key: Any = None
    venue: Any = None
    reconciler: Any = None
    recon_task: asyncio.Task | None = None
