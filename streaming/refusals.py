"""How many refused control messages reach audit_log: a fixed window per reason.

Anyone who can reach the control topic or the worker's port can send forged messages; each refusal writing a
row would let them grow the append-only audit log (which nobody may trim) without bound. So per refusal reason
at most ``rows`` are written per window of ``window_s``; the rest are only counted -- every refusal still counts
in tradeloop_control_refused_total -- and one summary row (how many, from which transports) is written when the
window closes. Per reason, so that a flood of forgeries (bad_signature) cannot hide a replay of a real command
(replayed) behind it. A fixed window rather than a token bucket: "N rows, then one summary per minute" is what
a reader of the audit log can reason about. Pure (clock injected): no Faust, no SQL.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Window:
    reason: str
    start: float  # clock() seconds when it opened
    wall_start_ns: int  # the same instant in wall-clock ns, for the summary row
    written: int = 0
    suppressed: int = 0
    transports: Counter = field(default_factory=Counter)  # transport kind (topic/http) of the suppressed ones


class RefusalBudget:
    def __init__(self, rows: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.rows, self.window_s, self.clock, self.wall_ns = rows, window_s, clock, wall_ns
        self.windows: dict[str, Window] = {}

    def admit(self, reason: str, transport: str) -> tuple[bool, Window | None]:
        """(write this refusal's row?, the previous window of this reason if it just closed with refusals to
        summarise). A window opens at the first refusal of its reason."""
        now = self.clock()
        closed = None
        w = self.windows.get(reason)
        if w is not None and now - w.start >= self.window_s:
            closed = self.windows.pop(reason)
            closed = closed if closed.suppressed else None
            w = None
        if w is None:
            w = self.windows[reason] = Window(reason, now, self.wall_ns())
        if w.written < self.rows:
            w.written += 1
            return True, closed
        w.suppressed += 1
        w.transports[transport.split(":", 1)[0]] += 1
        return False, closed

    def due(self) -> list[Window]:
        """The windows that have closed with suppressed refusals (removed): for a timer to summarise, when no
        further refusal of their reason comes to close them."""
        now = self.clock()
        out = [w for w in self.windows.values() if now - w.start >= self.window_s]
        for w in out:
            del self.windows[w.reason]
        return [w for w in out if w.suppressed]

    def seconds_left(self, reason: str) -> float:
        w = self.windows.get(reason)
        return 0.0 if w is None else max(0.0, self.window_s - (self.clock() - w.start))
