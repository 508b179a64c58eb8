"""OrderManager: the one path every order takes between the strategy engine and a venue, paper or live.

It implements ``trading.ports.ExecutionVenue`` towards the engine and drives any venue behind it:

* Outbox.  An order is recorded (NEW, into ``orders_sink`` and the journal) before it is handed to the
  venue.  A venue whose requests leave the process (``external``: an exchange) gets an order only after
  the caller has committed its intent: ``drained()`` marks what the caller has taken to store, and
  ``release()`` (called after the commit) sends it.  The paper venue has no effect outside the process,
  so its orders are sent at once and stored with their fills in the same batch.
* One journal.  Every transition (NEW, SUBMITTING, ACKNOWLEDGED, PARTIALLY_FILLED, CANCEL_PENDING,
  UNKNOWN, and the terminal ones) is appended to ``events_sink`` in the order it happened, checked
  against ``trading.oms.states``.
* Unknown orders are resolved by asking the venue (``venue.query``) with back-off, never by sending again.
* Scheduled orders (``ts`` in the future, e.g. the liquidator's spaced children) wait here until due.
* The router (``trading.oms.router``) may turn an order into a parent worked by an execution algorithm;
  parents are described in ``parents_sink`` (stored, resumable) and their children take the same path.
* A venue whose ``health()`` says "halt" (an IP ban, unreachable too long) calls ``on_halt`` once.

Not thread-safe: drive it from one thread or event loop, like the engine.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Callable

from trading.execution import CancelRequest, ParentOrder
from trading.oms.router import ParentRecord, Router
from trading.oms.states import TERMINAL, can_follow
from trading.records import Bar, Fill, OrderEvent, OrderRequest, OrderStatus, Tick

REJECT_KNOWN_ORDER = "known_client_order_id"  # the id is already recorded: a replayed decision
REPLACE_NOT_SUPPORTED = "replace_not_supported"  # a venue's answer to replace(): the order itself is unchanged
_ZERO = Decimal(0)
_S = OrderStatus
_CLOSED_KEPT = 20_000  # closed orders remembered for late fills and events


@dataclass(slots=True)
class ManagedOrder:
    order: OrderRequest
    status: OrderStatus
    filled: Decimal = _ZERO
    venue_order_id: str | None = None
    sent: bool = False
    committed: bool = False
    unknown_since: int | None = None  # monotonic ns
    since: int = 0  # monotonic ns: created here, or restored (its state is being resolved from then)
    next_query: int = 0
    queries: int = 0


class OrderManager:
    def __init__(self, venue: Any, *, account: str, orders_sink: list | None = None,
                 events_sink: list | None = None, parents_sink: list | None = None, router: Router | None = None,
                 on_halt: Callable[[str], None] | None = None, now: Callable[[], int] = time.monotonic_ns,
                 query_backoff_s: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)) -> None:
        self.venue, self.account = venue, account
        self.external = bool(getattr(venue, "external", False))
        self.orders_sink = orders_sink if orders_sink is not None else []
        self.events_sink = events_sink if events_sink is not None else []
        self.parents_sink = parents_sink if parents_sink is not None else []
        self.router = router
        self.on_halt = on_halt
        self.now = now
        self.backoff = [int(s * 1e9) for s in query_backoff_s]
        self.known: set[str] = set()
        self.orders: dict[str, ManagedOrder] = {}  # open (not terminal), by client id
        self.closed: OrderedDict[str, ManagedOrder] = OrderedDict()
        self.parents: dict[str, tuple[ParentOrder, ParentRecord]] = {}
        self._outbox: list[ManagedOrder] = []  # recorded, not yet sent (uncommitted, or scheduled for later)
        self._unknown: dict[str, ManagedOrder] = {}
        self._child_parent: dict[str, str] = {}
        self._worked: set[str] = set()  # children of router parents: the engine and risk gate see only the parent
        self.last_price: dict[str, Decimal] = {}
        self.clock = 0  # the market time (ns) of the latest event, for scheduled orders and parents
        self.halted: str | None = None
        self.counters: dict[str, int] = {}
        self._query = getattr(venue, "query", None)
        self._health = getattr(venue, "health", None)
        self._poll = getattr(venue, "poll", None)

    # -- the port ---------------------------------------------------------------------------------
    def submit(self, order: OrderRequest) -> list[OrderEvent | Fill]:
        if order.client_order_id in self.known:
            self._count("orders_replayed")
            return [OrderEvent(order.client_order_id, order.account, order.strategy, order.symbol, _S.REJECTED,
                               _ZERO, order.quantity, order.ts, REJECT_KNOWN_ORDER)]
        if order.parent_id is None and order.ts > self.clock:
            self.clock = order.ts  # a decision is made now; only a parent's children are scheduled ahead
        if self.router is not None:
            plan = self.router.plan(order, self.last_price.get(order.symbol), self.clock)
            if plan is not None:
                return self._start_parent(order, *plan)
        return self._create(order)

    def cancel(self, client_order_id: str, ts: int) -> list[OrderEvent | Fill]:
        if client_order_id in self.parents:
            return self._actions(self.parents[client_order_id][0].cancel(ts), ts) + self._parent_done(client_order_id, ts)
        mo = self.orders.get(client_order_id)
        if mo is None:
            return []
        if not mo.sent:  # still in the outbox: nothing to ask the venue
            self._outbox.remove(mo)
            return self._ingest([self._event(mo, _S.CANCELED, ts, "canceled_before_send")])
        if mo.status is _S.CANCEL_PENDING:
            return []
        out = self._transition(mo, self._event(mo, _S.CANCEL_PENDING, ts))
        return out + self._ingest(self.venue.cancel(client_order_id, ts))

    def replace(self, client_order_id: str, new_quantity: Decimal | None, new_price: Decimal | None,
                ts: int) -> list[OrderEvent | Fill]:
        evs = self.venue.replace(client_order_id, new_quantity, new_price, ts)
        # a venue without amend refuses the replace, not the order: the order stays as it is
        refused = [e for e in evs if isinstance(e, OrderEvent) and e.reason == REPLACE_NOT_SUPPORTED]
        if refused:
            self._count("replace_refused")
            evs = [e for e in evs if e not in refused]
        return self._ingest(evs)

    def ingest(self, events) -> list[OrderEvent | Fill]:
        """Venue facts found outside the venue's own reports (reconciliation): the same checks and journal."""
        return self._ingest(events)

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        return [mo.order for mo in self.orders.values() if symbol is None or mo.order.symbol == symbol]

    def on_tick(self, tick: Tick) -> list[OrderEvent | Fill]:
        ts = tick.exchange_ts
        if ts > self.clock:
            self.clock = ts
        self.last_price[tick.symbol] = tick.price
        if self.router is not None:
            self.router.on_trade(tick.symbol, ts, float(tick.amount))
        out = self._pump() if self._outbox else []
        evs = self.venue.on_tick(tick)
        if evs:
            out += self._ingest(evs)
        if self.parents:
            out += self._drive_parents(ts)
        if self.external:
            out += self._upkeep(ts)
        return out

    def on_bar(self, bar: Bar) -> list[OrderEvent | Fill]:
        self.last_price[bar.symbol] = bar.close
        out = self._pump() if self._outbox else []
        evs = self.venue.on_bar(bar)
        if evs:
            out += self._ingest(evs)
        if self.parents:
            out += self._drive_parents(self.clock)
        return out

    # -- the outbox and upkeep, driven by the caller ----------------------------------------------
    def drained(self) -> None:
        """The caller has taken ``orders_sink`` / ``events_sink`` to store: the intents recorded so far are
        about to be committed (their release follows the commit)."""
        for mo in self._outbox:
            mo.committed = True

    def release(self) -> list[OrderEvent | Fill]:
        """After the commit: send the committed orders that are due."""
        return self._pump() if self._outbox else []

    def poll(self, ts: int | None = None) -> list[OrderEvent | Fill]:
        """What the venue reported without market data (a live adapter's socket), unknown orders' queries
        and the venue's health: call this on a timer."""
        if ts is not None:
            self.clock = max(self.clock, ts)
        out = self._pump() if self._outbox else []
        if self._poll is not None:
            out += self._ingest(self._poll())
        if self.parents:
            out += self._drive_parents(self.clock)
        return out + self._upkeep(self.clock)

    def restore(self, open_orders: list[tuple[OrderRequest, OrderStatus, Decimal, str | None]],
                known_ids: set[str]) -> None:
        """Orders left open by a previous run (live venues: their state is resolved by asking the venue,
        as for an unknown order -- never by sending them again)."""
        self.known |= known_ids
        for order, status, filled, venue_id in open_orders:
            mo = ManagedOrder(order, status, filled, venue_id, sent=True, committed=True, since=self.now())
            self.orders[order.client_order_id] = mo
            self.known.add(order.client_order_id)
            self._mark_unknown(mo)

    def in_flight(self) -> dict[str, float]:
        """Orders whose state the OMS is establishing (not sent yet, sent without an answer, unknown), with
        the seconds since it began: created here, restored at start, or become unknown."""
        now = self.now()
        return {cid: (now - (mo.unknown_since or mo.since)) / 1e9 for cid, mo in self.orders.items()
                if mo.status in (_S.NEW, _S.SUBMITTING, _S.UNKNOWN)}

    def unknown_orders(self) -> list[dict[str, Any]]:
        now = self.now()
        return [{"client_order_id": cid, "symbol": mo.order.symbol, "queries": mo.queries,
                 "age_s": (now - (mo.unknown_since or now)) / 1e9} for cid, mo in self._unknown.items()]

    # -- internals ----------------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _event(self, mo: ManagedOrder, status: OrderStatus, ts: int, reason: str | None = None) -> OrderEvent:
        o = mo.order
        return OrderEvent(o.client_order_id, o.account, o.strategy, o.symbol, status, mo.filled,
                          max(o.quantity - mo.filled, _ZERO), ts, reason, mo.venue_order_id)

    def _create(self, order: OrderRequest) -> list[OrderEvent | Fill]:
        cid = order.client_order_id
        self.known.add(cid)
        mo = ManagedOrder(order, _S.NEW, since=self.now())
        self.orders[cid] = mo
        if order.parent_id is not None:
            self._child_parent[cid] = order.parent_id
            if order.parent_id in self.parents:
                self._worked.add(cid)
        self.orders_sink.append(order)
        ev = self._event(mo, _S.NEW, order.ts)
        self.events_sink.append(ev)
        shown = [] if cid in self._worked else [ev]
        if self.external or order.ts > self.clock:
            self._outbox.append(mo)
            return shown
        return shown + self._send(mo)

    def _send(self, mo: ManagedOrder) -> list[OrderEvent | Fill]:
        mo.sent = True
        out = self._transition(mo, self._event(mo, _S.SUBMITTING, max(mo.order.ts, self.clock)))
        return out + self._ingest(self.venue.submit(mo.order))

    def _pump(self) -> list[OrderEvent | Fill]:
        out: list[OrderEvent | Fill] = []
        clock, external = self.clock, self.external
        due = [mo for mo in self._outbox if mo.order.ts <= clock and (mo.committed or not external)]
        for mo in due:
            self._outbox.remove(mo)
            if self.halted is not None:
                out += self._ingest([self._event(mo, _S.REJECTED, clock, f"account_halted: {self.halted}")])
            else:
                out += self._send(mo)
        return out

    def _transition(self, mo: ManagedOrder, ev: OrderEvent) -> list[OrderEvent]:
        mo.status = ev.status
        self.events_sink.append(ev)
        return [] if ev.client_order_id in self._worked else [ev]

    def _ingest(self, events) -> list[OrderEvent | Fill]:
        """Venue reports -> checked transitions, journal, parents; returns what the engine should apply."""
        out: list[OrderEvent | Fill] = []
        for ev in events:
            if isinstance(ev, Fill):
                cid = ev.client_order_id
                if cid not in self.orders and cid not in self.closed:
                    self._count("fill_unknown_order")  # still a fact: the engine books it
                parent_id = self._child_parent.get(cid)
                if parent_id is not None:
                    ev = replace(ev, parent_id=parent_id)
                out.append(ev)
                if parent_id is not None and parent_id in self.parents:
                    out += self._parent_fill(parent_id, ev)
                continue
            out += self._on_event(ev)
        return out

    def _on_event(self, ev: OrderEvent) -> list[OrderEvent | Fill]:
        cid = ev.client_order_id
        mo = self.orders.get(cid)
        if mo is None:
            if cid in self.closed:
                self._count("late_event")
                return []
            if ev.reason == REJECT_KNOWN_ORDER:
                return [ev]
            self._count("event_unknown_order")
            return [ev]
        status = ev.status
        if status is _S.NEW:  # a simulated venue's "accepted, not yet filled"
            status = _S.ACKNOWLEDGED
        if status is mo.status and ev.filled_quantity <= mo.filled and status is not _S.UNKNOWN:
            return []  # a repeat (socket and REST both reported it)
        if not can_follow(mo.status, status):
            if ev.filled_quantity < mo.filled or status in (_S.SUBMITTING, _S.NEW):
                self._count("stale_event")
                return []
            self._count("unexpected_transition")  # the venue is the authority on what happened
        if ev.venue_order_id:
            mo.venue_order_id = ev.venue_order_id
        was_unknown = mo.status is _S.UNKNOWN
        mo.status = status
        if ev.filled_quantity > mo.filled:
            mo.filled = ev.filled_quantity
        if status is not ev.status or ev.venue_order_id != mo.venue_order_id:  # (dataclasses.replace is 5x slower)
            ev = OrderEvent(ev.client_order_id, ev.account, ev.strategy, ev.symbol, status, ev.filled_quantity,
                            ev.remaining_quantity, ev.ts, ev.reason, mo.venue_order_id)
        self.events_sink.append(ev)
        parent_id = self._child_parent.get(cid)
        # a router parent's children are the OMS's business: the engine and the risk gate know the parent
        out: list[OrderEvent | Fill] = [] if cid in self._worked else [ev]
        if status is _S.UNKNOWN:
            self._mark_unknown(mo)
        elif was_unknown:
            self._unknown.pop(cid, None)
            mo.unknown_since = None
        if status in TERMINAL:
            del self.orders[cid]
            self._unknown.pop(cid, None)
            self._worked.discard(cid)
            self._child_parent.pop(cid, None)
            self.closed[cid] = mo
            if len(self.closed) > _CLOSED_KEPT:
                self.closed.popitem(last=False)
        if parent_id is not None and parent_id in self.parents:
            parent = self.parents[parent_id][0]
            out += self._actions(parent.on_event(ev), ev.ts)
            if not parent.active:
                out += self._parent_done(parent_id, ev.ts)
        return out

    def _mark_unknown(self, mo: ManagedOrder) -> None:
        if mo.unknown_since is None:
            mo.unknown_since = self.now()
            mo.next_query = mo.unknown_since  # ask at once
            mo.queries = 0
        self._unknown[mo.order.client_order_id] = mo

    def _upkeep(self, ts: int) -> list[OrderEvent | Fill]:
        if self._unknown and self._query is not None:
            now = self.now()
            for cid, mo in list(self._unknown.items()):
                if now >= mo.next_query:
                    self._query(cid, mo.order.symbol, ts)
                    mo.next_query = now + self.backoff[min(mo.queries, len(self.backoff) - 1)]
                    mo.queries += 1
                    self._count("unknown_queries")
        if self._health is not None and self.halted is None:
            state, reason = self._health()
            if state == "halt":
                self.halted = reason or "venue halted"
                if self.on_halt is not None:
                    self.on_halt(self.halted)
        return []

    # -- parents -------------------------------------------------------------------------------------
    def _start_parent(self, order: OrderRequest, algo: ParentOrder, rec: ParentRecord) -> list[OrderEvent | Fill]:
        self.known.add(order.client_order_id)
        self.parents[order.client_order_id] = (algo, rec)
        self.parents_sink.append(rec)
        ts = max(order.ts, self.clock)
        ack = OrderEvent(order.client_order_id, order.account, order.strategy, order.symbol, _S.ACKNOWLEDGED,
                         _ZERO, order.quantity, ts, f"parent:{rec.algorithm}")
        return [ack] + self._actions(algo.on_time(ts), ts)

    def adopt_parent(self, algo: ParentOrder, rec: ParentRecord, children: list[str]) -> None:
        """A stored parent, resumed after a restart (``children``: its child ids recorded so far)."""
        self.parents[rec.parent_id] = (algo, rec)
        self.known.add(rec.parent_id)
        for cid in children:
            self._child_parent[cid] = rec.parent_id
            self._worked.add(cid)

    def _actions(self, actions, ts: int) -> list[OrderEvent | Fill]:
        out: list[OrderEvent | Fill] = []
        for a in actions:
            if isinstance(a, CancelRequest):
                out += self.cancel(a.client_order_id, a.ts)
            elif a.client_order_id in self.known:
                self._count("child_replayed")
            else:
                out += self._create(a)
        return out

    def _drive_parents(self, ts: int) -> list[OrderEvent | Fill]:
        out: list[OrderEvent | Fill] = []
        for pid, (algo, _rec) in list(self.parents.items()):
            if algo.active:
                out += self._actions(algo.on_time(ts), ts)
            if not algo.active:
                out += self._parent_done(pid, ts)
        return out

    def _parent_fill(self, parent_id: str, fill: Fill) -> list[OrderEvent | Fill]:
        algo, rec = self.parents[parent_id]
        out = self._actions(algo.on_fill(fill), fill.ts)
        rec.filled_quantity, rec.updated_ts = algo.filled, fill.ts
        self.parents_sink.append(rec)
        if not algo.active:
            out += self._parent_done(parent_id, fill.ts)
        return out

    def _parent_done(self, parent_id: str, ts: int) -> list[OrderEvent | Fill]:
        """The parent has ended (filled, canceled or halted): tell the engine and the store."""
        entry = self.parents.pop(parent_id, None)
        if entry is None:
            return []
        algo, rec = entry
        rec.filled_quantity, rec.updated_ts = algo.filled, ts
        if algo.filled >= algo.quantity:
            rec.status, status = "done", _S.FILLED
        elif algo.halted_reason is not None:
            rec.status, rec.reason, status = "halted", algo.halted_reason, _S.CANCELED
        else:
            rec.status, status = "canceled", _S.CANCELED
        self.parents_sink.append(rec)
        return [OrderEvent(parent_id, rec.account, rec.strategy, rec.symbol, status, algo.filled,
                           algo.quantity - algo.filled, ts, rec.reason or f"parent:{rec.algorithm}")]
