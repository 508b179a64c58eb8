"""Trading states per scope (account, strategy, symbol) and the transitions reported for the audit log.

A scope's state is the most severe of its active *causes* (a drawdown tier, a breaker, the kill
switch...).  Each cause is cleared by its own rule (cool-down, fresh data, day rollover) or by an
operator's resume, which clears them all; the state is recomputed and every change is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from trading.records import stable_id
from trading.risk.errors import RiskInputError


class TradingState(str, Enum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that reduce exposure
    HALTED = "halted"  # nothing

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

SCOPE_KINDS = ("account", "strategy", "symbol")


def scope(kind: str, name: str) -> str:
    """Scope string ``"account:main"``, ``"strategy:momo"``, ``"symbol:BTC/USDT"``."""
    if kind not in SCOPE_KINDS:
        raise RiskInputError(f"scope kind {kind!r} unknown; expected one of {SCOPE_KINDS}")
    return f"{kind}:{name}"


def parse_scope(text: str) -> tuple[str, str]:
    kind, sep, name = text.partition(":")
    if not sep or kind not in SCOPE_KINDS or not name:
        raise RiskInputError(f"scope {text!r} invalid; expected 'account:NAME', 'strategy:NAME' or 'symbol:SYMBOL'")
    return kind, name


@dataclass(frozen=True, slots=True)
class StateTransition:
    """One change of a scope's trading state, ready for the audit log."""

    scope: str
    old: TradingState
    new: TradingState
    reason: str
    ts: int
    who: str = "risk_engine"

    @property
    def id(self) -> str:
        return stable_id("risk_transition", self.scope, self.old.value, self.new.value, self.reason, self.ts)


@dataclass(slots=True)
class Cause:
    level: TradingState
    detail: str
    until_ns: int | None = None  # auto-clears at this time (cool-downs); None = by its own rule/operator


class ScopeStates:
    """States of every scope, derived from their causes; reports each change through ``emit``."""

    def __init__(self, emit: Callable[[StateTransition], None]) -> None:
        self._emit = emit
        self._causes: dict[str, dict[str, Cause]] = {}
        self.state: dict[str, TradingState] = {}  # only non-ACTIVE scopes, for O(1) look-ups on the hot path

    def get(self, scope_: str) -> TradingState:
        return self.state.get(scope_, TradingState.ACTIVE)

    def causes(self, scope_: str) -> dict[str, Cause]:
        return dict(self._causes.get(scope_, {}))

    def has(self, scope_: str, cause: str) -> bool:
        return cause in self._causes.get(scope_, ())

    def add(self, scope_: str, cause: str, level: TradingState, detail: str, ts: int,
            until_ns: int | None = None, who: str = "risk_engine") -> None:
        self._causes.setdefault(scope_, {})[cause] = Cause(level, detail, until_ns)
        self._recompute(scope_, f"{cause}: {detail}" if detail else cause, ts, who)

    def clear(self, scope_: str, cause: str, reason: str, ts: int, who: str = "risk_engine") -> None:
        causes = self._causes.get(scope_)
        if causes and causes.pop(cause, None) is not None:
            self._recompute(scope_, reason, ts, who)

    def clear_all(self, scope_: str, reason: str, ts: int, who: str) -> None:
        if self._causes.pop(scope_, None):
            self._recompute(scope_, reason, ts, who)

    def expire(self, scope_: str, now: int) -> None:
        """Clear the scope's causes whose cool-down has elapsed."""
        for cause, c in list(self._causes.get(scope_, {}).items()):
            if c.until_ns is not None and now >= c.until_ns:
                self.clear(scope_, cause, f"{cause}: cool-down elapsed", now)

    def scopes_with_causes(self) -> list[str]:
        return [s for s, c in self._causes.items() if c]

    def _recompute(self, scope_: str, reason: str, ts: int, who: str) -> None:
        causes = self._causes.get(scope_) or {}
        new = max((c.level for c in causes.values()), key=lambda s: s.severity, default=TradingState.ACTIVE)
        old = self.get(scope_)
        if new is TradingState.ACTIVE:
            self.state.pop(scope_, None)
            self._causes.pop(scope_, None)
        else:
            self.state[scope_] = new
        if new is not old:
            self._emit(StateTransition(scope_, old, new, reason, ts, who))
