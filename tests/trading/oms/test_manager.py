"""The OMS: outbox before the venue, the journal, unknown orders resolved by asking, parents, halts.

The exchange side here is ``ScriptedVenue``, a minimal implementation of the live venue port (what the ccxt
adapters implement) whose answers each test scripts; the adapters themselves are tested against the fake
exchange in tests/streaming/venues/.
"""

from __future__ import annotations

from decimal import Decimal

from trading.oms.manager import REJECT_KNOWN_ORDER, OrderManager
from trading.oms.router import Router, RouterConfig
from trading.records import (
    NS_PER_S, Fill, Liquidity, OrderEvent, OrderRequest, OrderStatus as S, OrderType, Side, Tick, stable_id,
)
from trading.venue import PaperVenue
from streaming.trader import TickFillVenue

D = Decimal
T0 = 1_700_000_000 * NS_PER_S


def order(cid="o1", qty="1", ts=T0, otype=OrderType.MARKET, price=None, parent=None) -> OrderRequest:
    return OrderRequest(cid, "acct", "s1", "sim", "BTC/USDT", Side.BUY, otype, D(qty), price=price, ts=ts,
                        parent_id=parent)


def tick(ts, price="100", amount="1") -> Tick:
    return Tick("sim", "BTC/USDT", ts, ts, D(price), D(amount))


class ScriptedVenue:
    """The live venue port with scripted answers: submit/cancel queue; poll() returns what was scripted."""

    external = True

    def __init__(self) -> None:
        self.sent: list[OrderRequest] = []
        self.canceled: list[str] = []
        self.queries: list[str] = []
        self.inbox: list = []
        self.state, self.reason = "ok", None

    def submit(self, o):
        self.sent.append(o)
        return []

    def cancel(self, cid, ts):
        self.canceled.append(cid)
        return []

    def replace(self, *a):
        return []

    def query(self, cid, symbol, ts):
        self.queries.append(cid)

    def poll(self):
        out, self.inbox = self.inbox, []
        return out

    def on_tick(self, t):
        return self.poll()

    def on_bar(self, b):
        return self.poll()

    def open_orders(self, symbol=None):
        return []

    def health(self):
        return self.state, self.reason


def ev(o: OrderRequest, status, filled="0", reason=None, vid=None) -> OrderEvent:
    return OrderEvent(o.client_order_id, o.account, o.strategy, o.symbol, status, D(filled),
                      o.quantity - D(filled), o.ts, reason, vid)


def fill(o: OrderRequest, qty, price="100", n=1) -> Fill:
    return Fill(stable_id("fill", "sim", o.client_order_id, n), o.client_order_id, o.account, o.strategy, o.exchange,
                o.symbol, o.side, D(price), D(qty), D("0.1"), "USDT", Liquidity.TAKER, o.ts)


def statuses(events) -> list[S]:
    return [e.status for e in events]


def test_paper_orders_go_through_the_journal_in_order():
    journal, intents = [], []
    oms = OrderManager(TickFillVenue(PaperVenue("sim")), account="acct", events_sink=journal, orders_sink=intents)
    oms.on_tick(tick(T0 - 1))
    out = oms.submit(order())
    assert intents == [order()]
    out += oms.on_tick(tick(T0 + 1))
    assert statuses(journal) == [S.NEW, S.SUBMITTING, S.ACKNOWLEDGED, S.FILLED]
    fills = [f for f in out if isinstance(f, Fill)]
    assert len(fills) == 1 and fills[0].quantity == D(1)
    assert oms.orders == {}  # closed


def test_an_exchange_gets_an_order_only_after_its_intent_is_committed():
    venue, journal = ScriptedVenue(), []
    oms = OrderManager(venue, account="acct", events_sink=journal)
    assert statuses(oms.submit(order())) == [S.NEW]
    assert oms.release() == [] and venue.sent == []  # not drained, so not committed: nothing leaves
    oms.drained()
    out = oms.release()
    assert [o.client_order_id for o in venue.sent] == ["o1"]
    assert statuses(out) == [S.SUBMITTING]
    assert statuses(journal) == [S.NEW, S.SUBMITTING]


def test_a_client_order_id_is_never_sent_twice():
    venue = ScriptedVenue()
    oms = OrderManager(venue, account="acct")
    oms.submit(order())
    oms.drained()
    oms.release()
    again = oms.submit(order())
    assert again[0].status is S.REJECTED and again[0].reason == REJECT_KNOWN_ORDER
    oms.drained()
    oms.release()
    assert len(venue.sent) == 1


def test_an_unknown_order_is_resolved_by_asking_the_venue_never_by_resending():
    venue, journal = ScriptedVenue(), []
    clock = [0]
    oms = OrderManager(venue, account="acct", events_sink=journal, now=lambda: clock[0],
                       query_backoff_s=(1, 2))
    o = order()
    oms.submit(o)
    oms.drained()
    oms.release()
    venue.inbox = [ev(o, S.UNKNOWN, reason="timeout")]
    oms.poll(T0)
    assert venue.queries == ["o1"]  # asked at once
    oms.poll(T0)
    assert venue.queries == ["o1"]  # back-off: not again before a second has passed
    clock[0] = 1_000_000_001
    oms.poll(T0)
    assert venue.queries == ["o1", "o1"]
    assert oms.unknown_orders()[0]["client_order_id"] == "o1"
    venue.inbox = [fill(o, "1"), ev(o, S.FILLED, "1", vid="v9")]
    out = oms.poll(T0)
    assert statuses(journal) == [S.NEW, S.SUBMITTING, S.UNKNOWN, S.FILLED]
    assert journal[-1].venue_order_id == "v9"
    assert any(isinstance(x, Fill) for x in out)
    assert oms.unknown_orders() == [] and len(venue.sent) == 1
    clock[0] = 10 * 1_000_000_000
    oms.poll(T0)
    assert venue.queries == ["o1", "o1"]  # resolved: no more queries


def test_cancel_pending_then_a_late_fill_then_canceled():
    venue, journal = ScriptedVenue(), []
    oms = OrderManager(venue, account="acct", events_sink=journal)
    o = order(otype=OrderType.LIMIT, price=D("99"))
    oms.submit(o)
    oms.drained()
    oms.release()
    venue.inbox = [ev(o, S.ACKNOWLEDGED, vid="v1")]
    oms.poll()
    assert statuses(oms.cancel("o1", T0)) == [S.CANCEL_PENDING]
    assert venue.canceled == ["o1"]
    venue.inbox = [fill(o, "0.4"), ev(o, S.PARTIALLY_FILLED, "0.4"), ev(o, S.CANCELED, "0.4")]
    oms.poll()
    assert statuses(journal) == [S.NEW, S.SUBMITTING, S.ACKNOWLEDGED, S.CANCEL_PENDING, S.PARTIALLY_FILLED,
                                 S.CANCELED]
    assert journal[-1].filled_quantity == D("0.4")


def test_an_order_canceled_before_it_was_sent_never_reaches_the_venue():
    venue, journal = ScriptedVenue(), []
    oms = OrderManager(venue, account="acct", events_sink=journal)
    oms.submit(order())
    assert statuses(oms.cancel("o1", T0)) == [S.CANCELED]
    oms.drained()
    oms.release()
    assert venue.sent == [] and statuses(journal) == [S.NEW, S.CANCELED]


def test_stale_and_repeated_reports_do_not_move_an_order_backwards():
    venue, journal = ScriptedVenue(), []
    oms = OrderManager(venue, account="acct", events_sink=journal)
    o = order(otype=OrderType.LIMIT, price=D("99"))
    oms.submit(o)
    oms.drained()
    oms.release()
    venue.inbox = [ev(o, S.PARTIALLY_FILLED, "0.5"), ev(o, S.PARTIALLY_FILLED, "0.5"), ev(o, S.ACKNOWLEDGED)]
    oms.poll()
    assert statuses(journal) == [S.NEW, S.SUBMITTING, S.PARTIALLY_FILLED]
    assert oms.counters.get("stale_event") == 1


def test_scheduled_children_wait_until_they_are_due():
    """The liquidator's spaced children (parent_id set, ts ahead) keep their spacing at any venue."""
    venue = ScriptedVenue()
    venue.external = False
    oms = OrderManager(venue, account="acct")
    oms.on_tick(tick(T0))
    later = order("late", ts=T0 + 30 * NS_PER_S, parent="liquidate:1")
    oms.submit(later)
    oms.on_tick(tick(T0 + 10 * NS_PER_S))
    assert venue.sent == []
    oms.on_tick(tick(T0 + 30 * NS_PER_S))
    assert [o.client_order_id for o in venue.sent] == ["late"]


def test_a_halting_venue_halts_once_and_nothing_more_is_sent():
    venue, halts = ScriptedVenue(), []
    oms = OrderManager(venue, account="acct", on_halt=halts.append)
    venue.state, venue.reason = "halt", "venue_ip_banned (418)"
    oms.poll(T0)
    oms.poll(T0)
    assert halts == ["venue_ip_banned (418)"]
    out = oms.submit(order())
    oms.drained()
    out += oms.release()
    assert venue.sent == [] and out[-1].status is S.REJECTED and "account_halted" in out[-1].reason


def test_the_router_works_a_large_order_as_a_twap_within_the_participation_limit():
    parents, journal = [], []
    router = Router(RouterConfig(participation=0.1, volume_window_s=60, slice_s=60))
    oms = OrderManager(TickFillVenue(PaperVenue("sim")), account="acct", router=router, parents_sink=parents,
                       events_sink=journal)
    for i in range(60):  # 1 unit/s traded: 60 per minute, so at most 6 per one-minute slice
        oms.on_tick(tick(T0 - 60 * NS_PER_S + i * NS_PER_S))
    out = oms.submit(order("big", qty="15", ts=T0))
    assert out[0].client_order_id == "big" and out[0].status is S.ACKNOWLEDGED
    rec = parents[-1]
    assert rec.algorithm == "twap" and rec.params["n_slices"] == 3 and rec.arrival_price == D(100)
    fills = []
    for i in range(1, 4 * 60):
        fills += [f for f in oms.on_tick(tick(T0 + i * NS_PER_S)) if isinstance(f, Fill)]
    children = {f.client_order_id for f in fills}
    assert len(children) == 3 and all(f.parent_id == "big" for f in fills)
    assert sum(f.quantity for f in fills) == D(15)
    assert max(f.quantity for f in fills) <= D(6)
    assert parents[-1].status == "done" and parents[-1].filled_quantity == D(15)
    assert all(e.client_order_id != "big" for e in journal)  # parents are stored in parent_orders, not orders


def test_small_orders_and_orders_without_volume_go_out_whole():
    router = Router(RouterConfig(participation=0.1, volume_window_s=60))
    venue = ScriptedVenue()
    venue.external = False
    oms = OrderManager(venue, account="acct", router=router)
    oms.submit(order("first", qty="50"))  # no volume seen yet: nothing to measure participation against
    for i in range(60):
        oms.on_tick(tick(T0 + i * NS_PER_S))
    oms.submit(order("small", qty="5", ts=T0 + 60 * NS_PER_S))
    assert [o.client_order_id for o in venue.sent] == ["first", "small"]
    assert oms.parents == {}
