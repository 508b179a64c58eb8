"""The hot path of one account, in process: tick -> bar -> strategy -> sizing -> risk -> paper fill.

No Faust, no SQL here: the agent in streaming/agents.py feeds ticks in and drains the resulting events
(signals, orders, order events, fills, positions, bars, risk transitions) to Kafka and Postgres.  The
trading itself is trading.strategies.engine.StrategyEngine with trading.venue.PaperVenue,
trading.ledger.Portfolio and trading.risk.RiskEngine -- the backtester's code.

Fills: the venue runs in bar mode and every tick reaches it as a one-print bar, so a market order
decided at a bar close fills at the next trade print (plus the venue's impact model), not a minute
later at the next bar's open.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping

from trading.ledger import Portfolio
from trading.clock import BarClock
from trading.marketdata.bars import BarAggregator
from trading.oms.manager import REJECT_KNOWN_ORDER, OrderManager
from trading.oms.manual import (ManualOrder, ManualOrderError, ManualOrderRefused, manual_request,
                                not_cancellable)
from trading.oms.router import ParentRecord, Router, rebuild
from trading.ports import ExecutionVenue
from trading.records import (
    Bar, Fill, Instrument, OrderEvent, OrderRequest, Position, Tick, stable_id,
)
from trading.risk import FlattenRequest, RiskEngine, RiskLimits, StateTransition, TradingState
from trading.sizing import FixedFraction, Sizer
from trading.strategies import Strategy, StrategyError, TargetPosition, create_strategy
from trading.strategies.capabilities import FillHistory, ModelBacked, OwnSignals, Replayable, WeightsBacked
from trading.strategies.engine import StrategyEngine
from trading.venue import PaperVenue

LIQUIDATION = "liquidation"  # parent_orders.algorithm of the emergency liquidator's parents

log = logging.getLogger(__name__)


@dataclass
class SignalOut:
    signal_id: str
    strategy: str
    symbol: str
    target: float
    ts: int
    model_name: str
    model_version: str
    score: float | None = None  # the model's raw score (ML strategies); None for rule-based strategies
    shadow: bool = False  # a challenger's signal in shadow mode: recorded, never traded
    features: dict[str, float] | None = None  # what a live model scored: the drift sensor's live sample


@dataclass
class Batch:
    """Everything the hot path produced since the last drain, in order within each kind."""

    signals: list[SignalOut] = field(default_factory=list)
    orders: list[OrderRequest] = field(default_factory=list)  # accepted by risk, sent to the venue
    events: list[OrderEvent] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)  # latest of each touched (strategy, symbol)
    bars: list[Bar] = field(default_factory=list)
    transitions: list[StateTransition] = field(default_factory=list)
    account: str = ""  # whose batch (signal rows carry no account of their own)
    parents: list[ParentRecord] = field(default_factory=list)  # the router's parent orders, latest state last

    def __bool__(self) -> bool:
        return bool(self.signals or self.orders or self.events or self.fills or self.bars or self.transitions
                    or self.parents)


@dataclass
class Restored:
    """State read back from Postgres (the system of record) when a worker starts."""

    fills: list[Fill] = field(default_factory=list)  # every fill of the account, in time order
    known_order_ids: set[str] = field(default_factory=set)
    bars: list[Bar] = field(default_factory=list)  # recent 1m bars, for strategy warm-up, time order
    watermark: dict[str, int] = field(default_factory=dict)  # symbol -> open ts of the last stored bar
    halted: tuple[str, str] | None = None  # (who, reason) of a kill switch not yet resumed
    parents: list = field(default_factory=list)  # working parent orders: (ParentRecord, child ids)
    open_orders: list = field(default_factory=list)  # sandbox/live: orders the exchange may still hold


class _Tap:
    """Wraps a strategy to record its targets as signals (the engine only sees targets as orders).

    The strategy's capabilities (trading.strategies.capabilities) are resolved here, once per slot."""

    def __init__(self, slot: str, strategy: Strategy, sink: list[SignalOut], account: str,
                 release: int | None = None) -> None:
        self.slot, self.inner, self._sink, self._account = slot, strategy, sink, account
        self.name = strategy.name
        self.release = release  # the strategy_releases version the slot runs (None: configured or swapped)
        self.version = f"r{release}" if release else str(getattr(strategy, "model_version", None) or strategy.version)
        # A/B of strategy releases: a candidate run beside the slot on the same bars, never traded
        self.shadow: Strategy | None = None
        self.shadow_release: int | None = None
        self._held: dict[str, float] = {}  # symbol -> the slot's standing target (its last decision)
        self._shadow_held: dict[str, float] = {}
        self.sizer = strategy.sizer  # the engine sizes a slot with its strategy's own sizer, if any
        self.model_backed = isinstance(strategy, ModelBacked)
        self.weights_backed = isinstance(strategy, WeightsBacked)
        self.replayable = isinstance(strategy, Replayable)
        self.fill_history = isinstance(strategy, FillHistory)
        self.fills: list[Fill] = []  # the slot's fills, kept for a FillHistory strategy (a swap hands them on)
        # ML strategies record a signal per scored bar (score, version, shadow rows) themselves; the tap
        # would only see target changes, so it records nothing for them
        self._own = isinstance(strategy, OwnSignals)
        if self._own:
            strategy.bind_signals(slot, account, sink)

    def _tap(self, targets: list[TargetPosition], ts: int) -> list[TargetPosition]:
        if self._own:
            return targets
        inner = self.inner
        model = getattr(inner, "model_name", None) or inner.name
        version = str(getattr(inner, "model_version", None) or self.version)
        for t in targets:
            self._held[t.symbol] = float(t.target)
            self._sink.append(SignalOut(stable_id("signal", self._account, self.slot, t.symbol, ts), self.slot,
                                        t.symbol, float(t.target), ts, model, version))
        return targets

    def on_bar(self, bar: Bar, ctx: Any) -> list[TargetPosition]:
        targets = self._tap(self.inner.on_bar(bar, ctx), ctx.ts)
        if self.shadow is not None:
            self._paired(bar, ctx, decided=any(t.symbol == bar.symbol for t in targets))
        return targets

    def set_shadow(self, strategy: Strategy | None, release: int | None, start: dict[str, float]) -> None:
        """Run ``strategy`` (a candidate release, warmed up: ``start`` holds its standing targets) beside the
        slot; None stops it."""
        if strategy is not None and self._own:
            raise StrategyError(f"slot {self.slot!r} records its own shadow (ml_signal's challenger model)")
        self.shadow, self.shadow_release = strategy, release if strategy is not None else None
        self._shadow_held = dict(start) if strategy is not None else {}

    def _paired(self, bar: Bar, ctx: Any, decided: bool) -> None:
        """Both decisions standing at this bar, a live and a shadow signal row, for the paired test on the
        same bars' returns (ml/shadow.py) -- the rows model shadow mode records per scored bar.  ``decided``:
        the live side's row of this bar was recorded already (its decision changed here)."""
        for t in self.shadow.on_bar(bar, ctx):
            self._shadow_held[t.symbol] = float(t.target)
        sym, ts = bar.symbol, ctx.ts
        live, cand = self._held.get(sym), self._shadow_held.get(sym)
        if live is None or cand is None:
            return  # one of them has not decided on this symbol yet: no pair
        if not decided:
            self._sink.append(SignalOut(stable_id("signal", self._account, self.slot, sym, ts), self.slot, sym, live,
                                        ts, self.inner.name, self.version))
        self._sink.append(SignalOut(stable_id("signal", self._account, self.slot, sym, ts, "shadow"), self.slot, sym,
                                    cand, ts, self.shadow.name, f"r{self.shadow_release}", shadow=True))

    def on_tick(self, tick: Tick, ctx: Any) -> list[TargetPosition]:
        return self._tap(self.inner.on_tick(tick, ctx), ctx.ts)

    def on_fill(self, fill: Fill, ctx: Any) -> list[TargetPosition]:
        if self.fill_history:
            self.fills.append(fill)
        return self._tap(self.inner.on_fill(fill, ctx), ctx.ts)


class TickFillVenue:
    """The stream's paper venue: PaperVenue (bar mode) driven by trade prints.  Implements
    trading.ports.ExecutionVenue.

    The engine's 1m bars are not used for fills (``on_bar`` returns nothing): every tick already reached
    the venue as a one-print bar, so orders are filled by the first print after they were sent.
    """

    def __init__(self, venue: PaperVenue) -> None:
        self.venue = venue

    def submit(self, order: OrderRequest) -> list[OrderEvent | Fill]:
        return self.venue.submit(order)

    def cancel(self, client_order_id: str, ts: int) -> list[OrderEvent]:
        return self.venue.cancel(client_order_id, ts)

    def replace(self, client_order_id: str, new_quantity: Decimal | None, new_price: Decimal | None,
                ts: int) -> list[OrderEvent | Fill]:
        return self.venue.replace(client_order_id, new_quantity, new_price, ts)

    def on_bar(self, bar: Bar) -> list[OrderEvent | Fill]:
        return []

    def on_tick(self, tick: Tick) -> list[OrderEvent | Fill]:
        if not self.venue.open_orders(tick.symbol):
            return []
        p = tick.price
        return self.venue.on_bar(Bar(tick.exchange, tick.symbol, "tick", tick.exchange_ts, tick.receive_ts,
                                     p, p, p, p, tick.amount))

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        return self.venue.open_orders(symbol)


class Trader:
    """One account's live trading state and loop.  Not thread-safe: drive it from one event loop."""

    def __init__(
        self,
        account: str,
        strategies: Mapping[str, Strategy],
        *,
        cash: Decimal,
        limits: RiskLimits,
        instruments: Mapping[str, Instrument],
        sizer: Sizer | None = None,
        interval: str = "1m",
        exchange: str = "sim",
        mode: str = "paper",
        factory: Any = None,
        venue: ExecutionVenue | None = None,
        router: Router | None = None,
    ) -> None:
        """``venue``: where orders go (trading.ports.ExecutionVenue); default the paper TickFillVenue.  Every
        order reaches it through the OMS (trading.oms.OrderManager), with ``router`` choosing how it is worked."""
        self.account, self.mode, self.exchange = account, mode, exchange
        # builds strategies for swap_strategy: the stream's factory knows `ml_signal` needs the registry
        self.factory = factory or create_strategy
        self.scenarios: dict[str, Any] = {"loaded": False, "error": "no scenarios loaded yet"}
        self.cash, self.instruments = cash, dict(instruments)
        self.out = Batch()
        self.clock = BarClock()
        self.risk = RiskEngine(limits, account, cash, self.clock, instruments=self.instruments,
                               on_transition=self._on_transition, on_flatten=self._flatten)
        self.portfolio = Portfolio(account, cash)
        self.oms = OrderManager(venue or TickFillVenue(PaperVenue(exchange, self.instruments)), account=account,
                                orders_sink=self.out.orders, events_sink=self.out.events,
                                parents_sink=self.out.parents, router=router, on_halt=self._venue_halt)
        self.known_ids = self.oms.known
        self.venue = self.oms
        slots = {slot: _Tap(slot, s, self.out.signals, account) for slot, s in strategies.items()}
        self.engine = StrategyEngine(self.venue, self.portfolio, slots, account=account, exchange=exchange,
                                     instruments=self.instruments, sizer=sizer or FixedFraction(0.05),
                                     risk=self.risk, history=200, clock=self.clock, keep_fills=False)
        self.bars = BarAggregator(interval)
        self.watermark: dict[str, int] = {}
        self.counters: Counter[str] = Counter()
        # the emergency liquidator's parents (parent id -> record, child ids): stored in parent_orders like
        # the router's, so their implementation shortfall is measured against the price at the decision
        self.liquidations: dict[str, tuple[ParentRecord, list[str]]] = {}
        self.last_tick_ns: int | None = None
        self._touched: set[tuple[str, str]] = set()

    # -- start-up ---------------------------------------------------------------------------------
    def restore(self, state: Restored) -> None:
        """Rebuild from Postgres: positions and cash from the fills, strategy state from recent bars
        (decisions held back until the next live bar), known order ids, and a standing kill switch."""
        # Replaying history trips the risk engine's anomaly counters (stored fills have no open order here;
        # warm-up bars are older than the last fill's mark): those are not live events, so they are undone.
        counters = self.risk.counters.copy()
        for f in state.fills:
            self.clock.set(f.ts)
            self.portfolio.apply_fill(f)
            self.risk.on_fill(f)
        for slot, t in self.engine.slots.items():
            if t.fill_history:
                t.fills = [f for f in state.fills if f.strategy == slot]
                t.inner.restore_fills(t.fills)
        self.known_ids |= state.known_order_ids
        # an exchange's orders left open by the previous run: asked about (as unknown orders), never resent
        self.oms.restore(state.open_orders, state.known_order_ids)
        for order, _status, filled, _vid in state.open_orders:
            if order.parent_id is None:
                self.engine.adopt_open(order.client_order_id, order.strategy, order.symbol, order.side.sign,
                                       order.quantity - filled)
        self._resume_parents(state)
        if state.bars:
            last_close = max(b.exchange_ts for b in state.bars) + self.bars.step
            self.engine.trade_from_ts = last_close
            by_ts: dict[int, list[Bar]] = {}
            for b in state.bars:
                by_ts.setdefault(b.exchange_ts, []).append(b)
            replaying = [t.inner for t in self.engine.slots.values() if t.replayable]
            for s in replaying:
                s.replaying = True  # warm-up bars build ML features without scoring them
            try:
                for ts in sorted(by_ts):
                    self.engine.on_bars(by_ts[ts])
            finally:
                for s in replaying:
                    s.replaying = False
            self.out.signals.clear()  # warm-up decisions are held back, not signals
        self.watermark = dict(state.watermark)
        if state.halted is not None:
            who, reason = state.halted
            self.risk.kill_switch(reason, flatten=False, who=who)
        self.risk.counters.clear()
        self.risk.counters.update(counters)
        self.out.transitions.clear()  # re-applying a stored state is not a new transition
        self.out.orders.clear()
        self.out.events.clear()
        self.out.fills.clear()

    def _resume_parents(self, state: Restored) -> None:
        """Parent orders still working when the worker stopped go on where they were: their children so far
        and those children's fills are fed back, and the engine counts the rest as pending, so the strategy
        does not decide the same quantity again."""
        by_child: dict[str, list[Fill]] = {}
        for f in state.fills:
            by_child.setdefault(f.client_order_id, []).append(f)
        for rec, children in state.parents:
            if rec.algorithm == LIQUIDATION:
                # its children are plain scheduled orders, not an algorithm to rebuild: the next drain closes
                # the record once none of them is open here
                rec.filled_quantity = sum((f.quantity for c in children for f in by_child.get(c, ())), Decimal(0))
                self.liquidations[rec.parent_id] = (rec, list(children))
                continue
            lot = self.instruments[rec.symbol].lot_size if rec.symbol in self.instruments else Decimal("0.0001")
            algo = rebuild(rec, lot)
            still_open = {o.client_order_id: o.quantity - filled for o, _st, filled, _v in state.open_orders
                          if o.parent_id == rec.parent_id}
            algo.resume(children, [f for c in children for f in by_child.get(c, ())], still_open)
            self.oms.adopt_parent(algo, rec, children)
            self.engine.adopt_open(rec.parent_id, rec.strategy, rec.symbol, rec.side.sign, algo.quantity - algo.filled)

    # -- the hot path -------------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> None:
        wm = self.watermark.get(tick.symbol)
        if wm is not None and tick.exchange_ts < wm + self.bars.step:
            self.counters["ticks_replayed"] += 1  # its bar is in Postgres already (a redelivered tick)
            return
        open_ts = self.bars.open_ts.get(tick.symbol)
        if open_ts is not None and tick.exchange_ts < open_ts:
            self.counters["ticks_late"] += 1  # its bar is closed; counted, not re-opened
            return
        self.counters["ticks"] += 1
        self.last_tick_ns = tick.exchange_ts
        bar = self.bars.update(tick)
        if bar is not None:
            self.out.bars.append(bar)
            self._record(self.engine.on_bars([bar]))
        self._record(self.engine.on_tick(tick))

    def _record(self, events: Iterable[OrderEvent | Fill]) -> None:
        """Fills into the batch (order events are journalled by the OMS itself, into ``out.events``)."""
        out = self.out
        for ev in events:
            if isinstance(ev, Fill):
                out.fills.append(ev)
                self._touched.add((ev.strategy, ev.symbol))
                if ev.parent_id in self.liquidations:
                    rec = self.liquidations[ev.parent_id][0]
                    rec.filled_quantity += ev.quantity
                    rec.updated_ts = max(rec.updated_ts, ev.ts)
                    out.parents.append(rec)
            elif ev.reason == REJECT_KNOWN_ORDER:
                self.counters["orders_replayed"] += 1

    def apply_reconciled(self, events: Iterable[OrderEvent | Fill]) -> None:
        """Facts reconciliation found at the venue and has already stored (missed fills, statuses the venue
        established, reports received meanwhile): the OMS follows them (journalling the transitions of the
        orders it holds, as for any venue report), the books take them, and what they cause (a strategy
        answering a fill) is recorded as usual.  Fills are not drained again (already stored)."""
        events = list(events)
        applied = self.oms.ingest(events)
        caused = self.engine.apply(applied)[len(applied):]
        for ev in applied:
            if isinstance(ev, Fill):
                self._touched.add((ev.strategy, ev.symbol))  # the positions table follows at the next drain
        self._record(caused)

    def journals(self, client_order_id: str) -> bool:
        """Whether the OMS journals this order's transitions itself (it holds the order, open or closed)."""
        return client_order_id in self.oms.orders or client_order_id in self.oms.closed

    def drain(self) -> Batch:
        """The events since the last drain; positions of every (strategy, symbol) a fill touched."""
        if self.liquidations:
            self._close_liquidations()
        out = self.out  # the risk engine, venue and taps append to these lists: copy, then clear in place
        batch = Batch(list(out.signals), list(out.orders), list(out.events), list(out.fills),
                      [self.portfolio.position(sym, strat) for strat, sym in sorted(self._touched)],
                      list(out.bars), list(out.transitions), self.account, list(out.parents))
        for lst in (out.signals, out.orders, out.events, out.fills, out.bars, out.transitions, out.parents):
            lst.clear()
        self._touched.clear()
        self.oms.drained()
        return batch

    def release(self) -> None:
        """After the drained batch is committed: the OMS sends the orders it was holding for that (an
        exchange's; the paper venue's go at once)."""
        self._record(self.engine.apply(self.oms.release()))

    def poll_venue(self, ts: int | None = None) -> None:
        """A live venue's reports that arrived without a tick, unknown orders' queries, the venue's health."""
        self._record(self.engine.apply(self.oms.poll(ts)))

    def _venue_halt(self, reason: str) -> None:
        """The venue adapter gave up on the account (an IP ban, unreachable too long): halt, no flatten --
        orders could not reach it anyway."""
        self.risk.kill_switch(f"venue: {reason}", flatten=False, who="oms")

    # -- operator actions ------------------------------------------------------------------------
    def kill_switch(self, reason: str, flatten: bool, who: str) -> None:
        self.clock.set(max(self.clock.ts, self.last_tick_ns or 0))
        self._flatten(self.risk.kill_switch(reason, flatten=flatten, who=who))

    def resume(self, reason: str, who: str) -> None:
        self.risk.resume(f"account:{self.account}", who, reason)

    def _market_now(self) -> int:
        """The time an operator's action takes effect: the market time of the latest event (the stream's
        clock is market time, as for every decision -- the risk engine's price age is measured in it)."""
        ts = max(self.clock.ts, self.last_tick_ns or 0, self.oms.clock)
        self.clock.set(ts)
        return ts

    def manual_order(self, order: ManualOrder, command_id: str) -> OrderRequest:
        """An operator's order, on the strategies' path: the risk engine's pre-trade check (kill switch,
        HALTED/REDUCING, limits), then the OMS (journal, client order id, the venue). Raises ManualOrderError
        (a symbol not traded here, a redelivered command) or ManualOrderRefused (risk, with its reason)."""
        if order.symbol not in self.instruments:
            raise ManualOrderError(f"symbol {order.symbol!r} is not traded by this worker "
                                   f"(it trades {', '.join(self.instruments)})")
        req = manual_request(order, account=self.account, exchange=self.exchange, command_id=command_id,
                             ts=self._market_now())
        if req.client_order_id in self.known_ids:
            raise ManualOrderError(f"order {req.client_order_id} of this command was already sent")
        decision = self.risk.check(req)
        if not decision.approved:
            self.counters[f"manual_rejected_{decision.reason}"] += 1
            raise ManualOrderRefused(decision.reason or "risk", decision.detail)
        self.counters["manual_orders"] += 1
        self._record(self.engine.submit_approved(req))
        return req

    def cancel_order(self, client_order_id: str) -> None:
        """Cancel one open order of the account (a strategy's, an operator's or a parent) through the OMS.
        Raises ManualOrderError when the OMS holds no such open order (unknown, or already final)."""
        if client_order_id not in self.oms.orders and client_order_id not in self.oms.parents:
            closed = self.oms.closed.get(client_order_id)
            raise ManualOrderError(not_cancellable(client_order_id, closed.status if closed else None))
        self._record(self.engine.cancel(client_order_id, self._market_now()))

    def order_status(self, client_order_id: str) -> str | None:
        """The OMS's status of an order it holds ("working" for a parent order), None if it holds none."""
        mo = self.oms.orders.get(client_order_id) or self.oms.closed.get(client_order_id)
        if mo is not None:
            return mo.status.value
        return "working" if client_order_id in self.oms.parents else None

    def swap_strategy(self, slot: str, name: str, params: dict[str, Any], release: int | None = None) -> None:
        """Run ``name(**params)`` in ``slot`` from the next event (``release``: the strategy_releases version
        these parameters are).  A shadow beside the slot stays if it is of the same strategy."""
        if slot not in self.engine.slots:
            raise StrategyError(f"no strategy slot {slot!r} (slots: {', '.join(self.engine.slots)})")
        strategy = self.factory(name, params)  # bad name / params raise StrategyError naming them
        old = self.engine.slots[slot]
        tap = _Tap(slot, strategy, self.out.signals, self.account, release)
        if tap.fill_history and old.fill_history:
            # the slot's tax lots and wash-sale windows carry over a parameter change or a new release
            tap.fills = list(old.fills)
            strategy.restore_fills(tap.fills)
        self.engine.swap_strategy(slot, tap)
        if old.shadow is not None and old.shadow.name == strategy.name and not tap._own:
            tap.set_shadow(old.shadow, old.shadow_release, old._shadow_held)

    def set_shadow(self, slot: str, name: str | None, params: dict[str, Any] | None = None,
                   release: int | None = None) -> None:
        """Run release ``release`` of ``name`` in shadow beside ``slot`` (recorded, never traded); name None stops it."""
        tap = self.engine.slots.get(slot)
        if tap is None:
            raise StrategyError(f"no strategy slot {slot!r} (slots: {', '.join(self.engine.slots)})")
        if name is None:
            tap.set_shadow(None, None, {})
            return
        strategy = self.factory(name, params or {})
        if tap._own:
            raise StrategyError(f"slot {slot!r} records its own shadow (ml_signal's challenger model)")
        tap.set_shadow(strategy, release, self.engine.replay(slot, strategy))

    def slots_view(self) -> dict[str, dict[str, Any]]:
        """What each slot runs: strategy, parameters, release, and the shadow beside it."""
        return {slot: {"strategy": t.inner.name, "params": dict(getattr(t.inner, "p", {})), "release": t.release,
                       "version": t.version,
                       "shadow": None if t.shadow is None else {"strategy": t.shadow.name, "release": t.shadow_release,
                                                                "params": dict(t.shadow.p)}}
                for slot, t in self.engine.slots.items()}

    def set_scenarios(self, symbols: list[str], returns: Any, info: dict[str, Any]) -> None:
        """VaR return scenarios (T x N, 1-day simple returns) and what they are, for the risk view.  With
        no symbols only ``info`` changes: the risk engine keeps any scenarios it had (it has no way to
        drop them), and the info says why nothing new was loaded."""
        if symbols:
            self.risk.set_scenarios(symbols, returns)  # validates; raises RiskDataError before any change
        self.scenarios = dict(info)

    def ml_strategies(self) -> dict[str, ModelBacked]:
        """Slot -> the registry-backed strategies (those with models to poll)."""
        return {slot: t.inner for slot, t in self.engine.slots.items() if t.model_backed}

    def weights_strategies(self) -> dict[str, WeightsBacked]:
        """Slot -> the strategies trading target weights (refreshed by the worker's weights timer)."""
        return {slot: t.inner for slot, t in self.engine.slots.items() if t.weights_backed}

    def model_driven_strategies(self) -> dict[str, ModelBacked | WeightsBacked]:
        """Slot -> model- or weights-backed strategies: what GET /model and the flat gauge show."""
        return {slot: t.inner for slot, t in self.engine.slots.items() if t.model_backed or t.weights_backed}

    def set_limits(self, overrides: dict[str, Any]) -> None:
        self.risk.update_limits(self.risk.limits.with_overrides(overrides))

    def _flatten(self, req: FlattenRequest) -> None:
        """Cancel the open orders and send the risk engine's (pre-approved) closing orders; each liquidation
        parent (its children share a parent_id) is recorded for parent_orders."""
        for cid in req.cancel_order_ids:
            self._record(self.engine.cancel(cid, req.ts))
        for order in req.orders:
            decision = self.risk.check(order)
            if not decision.approved:
                self.counters[f"flatten_rejected_{decision.reason}"] += 1
                continue
            if order.parent_id is not None and order.client_order_id not in self.known_ids:
                self._liquidation_child(order, req)  # before the submit: a venue may fill it at once
            self._record(self.engine.submit_approved(order))

    def _liquidation_child(self, order: OrderRequest, req: FlattenRequest) -> None:
        pid = order.parent_id
        entry = self.liquidations.get(pid)
        if entry is None:
            price = self.engine.last_price.get(order.symbol) or self.oms.last_price.get(order.symbol)
            if not price or price <= 0:
                self.counters["liquidation_parent_unpriced"] += 1  # parent_orders needs an arrival price
                return
            ts = max(req.ts, self.oms.clock)
            rec = ParentRecord(pid, order.account, order.strategy, order.exchange, order.symbol, order.side,
                               LIQUIDATION, Decimal(0), price,
                               {"children": 0, "interval_s": self.risk.limits.liquidation.interval_s,
                                "reason": req.reason},
                               created_ts=ts, updated_ts=ts)
            entry = self.liquidations[pid] = (rec, [])
            self.out.parents.append(rec)  # once; later states are this same record, appended again
        rec, children = entry
        children.append(order.client_order_id)
        rec.quantity += order.quantity
        rec.params["children"] = len(children)

    def _close_liquidations(self) -> None:
        """Liquidation parents whose children are all terminal (none open in the OMS) end: 'done' when the
        position was closed in full, else 'canceled' with the quantity left."""
        open_ids = self.oms.orders
        for pid, (rec, children) in list(self.liquidations.items()):
            if any(c in open_ids for c in children):
                continue
            del self.liquidations[pid]
            left = rec.quantity - rec.filled_quantity
            rec.status = "done" if left <= 0 else "canceled"
            rec.reason = None if left <= 0 else f"liquidation ended with {left} unfilled"
            rec.updated_ts = max(rec.updated_ts, self.oms.clock)
            self.out.parents.append(rec)

    # -- read-only views ---------------------------------------------------------------------------
    @property
    def state(self) -> TradingState:
        return self.risk.state

    def positions_view(self) -> list[dict]:
        out = []
        for sym, pos in sorted(self.portfolio.positions().items()):
            out.append({"symbol": sym, "quantity": str(pos.quantity), "avg_price": str(pos.avg_price),
                        "realized_pnl": str(pos.realized_pnl), "fees": str(pos.fees),
                        "unrealized_pnl": str(self.portfolio.unrealized_pnl(sym))})
        return out

    def open_orders_view(self) -> list[dict]:
        """The OMS's open orders (children of parent orders included, with their parent) and its parents."""
        orders = [{"client_order_id": cid, "strategy": mo.order.strategy, "symbol": mo.order.symbol,
                   "side": mo.order.side.value, "quantity": str(mo.order.quantity), "status": mo.status.value,
                   "filled_quantity": str(mo.filled), "parent_id": mo.order.parent_id,
                   "venue_order_id": mo.venue_order_id}
                  for cid, mo in sorted(self.oms.orders.items())]
        return orders

    def _on_transition(self, t: StateTransition) -> None:
        # the worker's log says when and why trading was restricted, not only the audit log
        level = logging.INFO if t.new is TradingState.ACTIVE else logging.WARNING
        log.log(level, "risk %s: %s -> %s (%s, by %s)", t.scope, t.old.value, t.new.value, t.reason, t.who)
        self.out.transitions.append(t)

    def risk_view(self) -> dict:
        m = self.risk.metrics()
        m = json.loads(json.dumps(m, default=str))  # Decimals and infinities as strings
        m["rejects"] = dict(self.engine.rejected)
        m["counters_stream"] = dict(self.counters)
        m["strategies_running"] = {slot: f"{t.inner.name} {t.version if t.release else 'v' + t.version}"
                                   for slot, t in self.engine.slots.items()}
        m["slots"] = self.slots_view()  # strategy, parameters, release and shadow of each slot
        m["limits"] = self.risk.limits.to_dict()  # as they stand, run-time changes included
        m["scenarios"] = self.scenarios
        if "var" not in m and "var_error" not in m:
            m["var_error"] = self.scenarios.get("error") or "no return scenarios loaded"
        m["wall_ts"] = time.time_ns()
        return m
