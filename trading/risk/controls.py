"""Trading states and operator controls: kill switch, resume, per-scope states, flatten requests.
Part of RiskEngine (a mixin over its state)."""

from __future__ import annotations

from trading.records import OrderRequest, stable_id
from trading.risk.decisions import FlattenRequest
from trading.risk.errors import RiskInputError
from trading.risk.liquidation import child_cap, DEFAULT_LOT, liquidation_orders
from trading.risk.states import ACTIVE, HALTED, parse_scope, StateTransition, TradingState


class OperatorControls:
    """States, kill switch, resume and flatten (state lives on RiskEngine)."""

    # -----------------------------------------------------------------------------------------
    # States, kill switch, operator actions
    # -----------------------------------------------------------------------------------------

    @property
    def state(self) -> TradingState:
        return self._states.get(self._acct_scope)

    def state_of(self, scope_: str) -> TradingState:
        parse_scope(scope_)
        return self._states.get(scope_)

    def kill_switch(self, reason: str, flatten: bool = False, *, who: str = "operator") -> FlattenRequest:
        """HALT the account: every new order is rejected until ``resume``.  Returns the open orders to
        cancel and, with ``flatten``, the child orders closing every position (they pass ``check``)."""
        now = self._clock()
        self._states.add(self._acct_scope, "kill_switch", HALTED, reason, now, who=who)
        return self._flatten_request(self._acct_scope, None, f"kill_switch: {reason}", now, flatten)

    def set_state(self, scope_: str, state: TradingState, who: str, reason: str) -> None:
        """Operator: put a scope in REDUCING or HALTED (a symbol only HALTED); lifted by ``resume``."""
        kind, _ = self._own_scope(scope_)
        if state is ACTIVE:
            raise RiskInputError("set_state: use resume() to return a scope to ACTIVE")
        if kind == "symbol" and state is not HALTED:
            raise RiskInputError(f"set_state: a symbol can only be HALTED, not {state.value}")
        self._states.add(scope_, "operator", state, reason, self._clock(), who=who)

    def hold(self, cause: str, state: TradingState, reason: str, *, who: str) -> None:
        """Another part of the platform (reconciliation with the venue) puts the account in REDUCING or
        HALTED for ``cause``; ``release(cause)`` or an operator's ``resume`` lifts it.  Holding a cause
        again replaces its level and reason (one transition when the account's state changes)."""
        if state is ACTIVE:
            raise RiskInputError("hold: ACTIVE is no hold; use release()")
        if cause in ("kill_switch", "operator"):
            raise RiskInputError(f"hold: cause {cause!r} belongs to the operator's controls")
        self._states.add(self._acct_scope, cause, state, reason, self._clock(), who=who)

    def release(self, cause: str, reason: str, *, who: str) -> None:
        """Lift the account's ``cause`` (nothing if it is not held); other causes stay."""
        self._states.clear(self._acct_scope, cause, reason, self._clock(), who=who)

    def held(self, cause: str) -> TradingState | None:
        """The level the account's ``cause`` holds it at, or None."""
        c = self._states.causes(self._acct_scope).get(cause)
        return None if c is None else c.level

    def resume(self, scope: str, who: str, reason: str) -> None:
        """Operator: clear every cause on the scope.  Drawdown and daily-loss baselines of an account or
        strategy are re-based at the current equity, so the same loss does not re-trigger at once."""
        kind, name = self._own_scope(scope)
        now = self._clock()
        self._states.clear_all(scope, f"operator resume: {reason}", now, who)
        if kind == "account":
            self._peak = self._day_start_equity = self._equity()
            self._mult = 1.0
        elif kind == "strategy":
            pnl = self._strategy_pnl(name)
            self._s_day_start[name] = pnl
            capital = self._strategy_limits(name).capital
            if capital is not None:
                self._s_peak[name] = capital + pnl
            self._s_mult.pop(name, None)
        else:
            mon = self._vol.get(name)
            if mon is not None:
                mon.reset()

    def _own_scope(self, scope_: str) -> tuple[str, str]:
        kind, name = parse_scope(scope_)
        if kind == "account" and name != self.account:
            raise RiskInputError(f"scope {scope_!r} is not this engine's account {self.account!r}")
        return kind, name

    def _flatten_request(self, scope_: str, strategy: str | None, reason: str, now: int,
                         with_orders: bool) -> FlattenRequest:
        cancels = tuple(cid for cid, rec in self._orders.items()
                        if not rec.terminal and (strategy is None or rec.order.strategy == strategy))
        orders: list[OrderRequest] = []
        if with_orders:
            request_id = stable_id("flatten", scope_, reason, now)
            liq = self._limits.liquidation
            for (strat, sym), pos in sorted(self._positions.items()):
                if pos.qty == 0 or (strategy is not None and strat != strategy):
                    continue
                r = self._rules_for(sym)
                lot = r.lot or DEFAULT_LOT
                cap = child_cap(liq, self._mark.get(sym), self.recent_volume(sym), lot)
                orders += liquidation_orders(self.account, strat, self._exchange.get(sym, ""), sym, pos.qty,
                                             cap, lot, now, liq.interval_s, request_id)
            for o in orders:
                if o.client_order_id not in self._seen_ids:  # a replayed request must not re-approve
                    self._preapproved[o.client_order_id] = o
        return FlattenRequest(scope_, reason, now, cancels, tuple(orders))

    def _emit(self, transition: StateTransition) -> None:
        self.counters[f"transition:{transition.new.value}"] += 1
        if self._on_transition is not None:
            self._on_transition(transition)

    def _cause_text(self, scope_: str) -> str:
        return "; ".join(f"{name}: {c.detail}" for name, c in self._states.causes(scope_).items())
