"""What the simulated platform decided and why, in simulated time.

Only deterministic facts go in (simulated timestamps, versions, metrics, reasons): no run ids, wall-clock
times or paths, so the same seed gives the same timeline, line for line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

NS = 1_000_000_000


@dataclass(frozen=True)
class Event:
    ts_ns: int  # simulated time
    kind: str  # market, features, train, gate, weights, tune, report, decay, risk, stream, serve, error
    text: str

    def line(self) -> str:
        when = datetime.fromtimestamp(self.ts_ns / NS, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        return f"{when}  {self.kind:<8} {self.text}"


@dataclass
class Timeline:
    events: list[Event] = field(default_factory=list)
    echo: object = None  # callable(str) printing each event as it happens, or None

    def add(self, ts_ns: int, kind: str, text: str) -> Event:
        event = Event(ts_ns, kind, text)
        self.events.append(event)
        if self.echo is not None:
            self.echo(event.line())
        return event

    def lines(self) -> list[str]:
        return [e.line() for e in self.events]

    def kinds(self) -> set[str]:
        return {e.kind for e in self.events}
