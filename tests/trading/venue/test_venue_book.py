"""The matching engine on its own: priority, order types, TIF, amend, stops, and a reference-model check."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.venue.book import (
    CANCELED,
    FILLED,
    FOK,
    GTC,
    IOC,
    REJECTED_FOK,
    REJECTED_POST_ONLY,
    RESTED,
    SELF_TRADE,
    STOP_PENDING,
    BookError,
    DuplicateOrderIdError,
    OrderBook,
    UnknownOrderIdError,
)


def book_with_asks() -> OrderBook:
    b = OrderBook()
    b.add("a1", False, 5, 101)
    b.add("a2", False, 3, 101)
    b.add("a3", False, 4, 102)
    return b


def test_price_then_time_priority():
    b = OrderBook()
    b.add("late_better", False, 2, 100)  # better price arrives first
    b.add("first", False, 2, 101)
    b.add("second", False, 2, 101)
    b.add("best_last", False, 1, 99)
    code, trades, _ = b.add("t", True, 6, 101)
    assert code == FILLED
    assert [(m, p, q) for m, _, p, q in trades] == [("best_last", 99, 1), ("late_better", 100, 2), ("first", 101, 2), ("second", 101, 1)]
    assert b.level_orders(False, 101) == [("second", 1)]


def test_market_order_walks_levels_and_drops_remainder():
    b = book_with_asks()
    code, trades, _ = b.add("m", True, 20)
    assert code == CANCELED
    assert sum(q for *_, q in trades) == 12
    assert b.best_ask() is None and "m" not in b


def test_limit_partial_fill_rests_remainder():
    b = book_with_asks()
    code, trades, _ = b.add("l", True, 10, 101)
    assert code == RESTED
    assert [(m, q) for m, _, _, q in trades] == [("a1", 5), ("a2", 3)]
    assert b.best_bid() == 101 and b.remaining("l") == 2
    assert b.best_ask() == 102


def test_ioc_remainder_canceled():
    b = book_with_asks()
    code, trades, _ = b.add("i", True, 10, 101, IOC)
    assert code == CANCELED and sum(t[3] for t in trades) == 8
    assert "i" not in b and b.best_bid() is None


def test_fok_all_or_nothing():
    b = book_with_asks()
    code, trades, _ = b.add("f", True, 9, 101, FOK)  # only 8 within the limit
    assert code == REJECTED_FOK and trades == []
    assert b.depth(False) == [(101, 8), (102, 4)]
    code, trades, _ = b.add("f2", True, 12, 102, FOK)
    assert code == FILLED and sum(t[3] for t in trades) == 12


def test_post_only_crossing_is_rejected_and_passive_rests():
    b = book_with_asks()
    assert b.add("p", True, 1, 101, post_only=True)[0] == REJECTED_POST_ONLY
    assert "p" not in b
    assert b.add("p2", True, 1, 100, post_only=True)[0] == RESTED


def test_cancel_is_immediate_and_skipped_in_queue():
    b = book_with_asks()
    assert b.cancel("a1") == 5
    assert b.depth(False) == [(101, 3), (102, 4)]
    _, trades, _ = b.add("t", True, 3, 101)
    assert [t[0] for t in trades] == ["a2"]
    with pytest.raises(UnknownOrderIdError):
        b.cancel("a1")


def test_amend_decrease_keeps_priority_increase_and_price_change_lose_it():
    b = OrderBook()
    for i in ("x", "y", "z"):
        b.add(i, True, 5, 100)
    assert b.amend("x", qty=2)[0] == RESTED
    assert b.level_orders(True, 100) == [("x", 2), ("y", 5), ("z", 5)]
    b.amend("y", qty=6)
    assert b.level_orders(True, 100) == [("x", 2), ("z", 5), ("y", 6)]
    b.amend("x", price=99)
    b.amend("x", price=100)
    assert b.level_orders(True, 100) == [("z", 5), ("y", 6), ("x", 2)]


def test_amend_to_crossing_price_trades_and_post_only_amend_refused():
    b = book_with_asks()
    b.add("bid", True, 2, 100)
    code, trades, _ = b.amend("bid", price=101)
    assert code == FILLED and trades[0][:2] == ("a1", "bid")
    b.add("po", True, 2, 100, post_only=True)
    assert b.amend("po", price=101)[0] == REJECTED_POST_ONLY
    assert b.level_orders(True, 100) == [("po", 2)]


def test_duplicate_and_invalid_input():
    b = book_with_asks()
    with pytest.raises(DuplicateOrderIdError):
        b.add("a1", False, 1, 105)
    for bad in (dict(qty=0), dict(qty=-1), dict(qty=1.5), dict(price=0), dict(price=-3)):
        kwargs = {"qty": 1, "price": 100} | bad
        with pytest.raises(BookError):
            b.add("bad", True, **kwargs)
    with pytest.raises(BookError):
        b.add("po_mkt", True, 1, None, post_only=True)


def test_stop_triggers_on_trades_and_cascades():
    b = OrderBook()
    b.add("bid1", True, 1, 99)
    b.add("bid2", True, 5, 95)
    assert b.add("stop", False, 2, stop=98)[0] == STOP_PENDING  # sell stop: last <= 98
    assert b.add("stop_limit", False, 3, price=96, stop=95)[0] == STOP_PENDING
    code, trades, canceled = b.add("seller", False, 1, 99)  # trades at 99: no trigger
    assert code == FILLED and b.last_price == 99
    assert "stop" in b
    trades, canceled = b.set_last_price(98)  # market prints 98: stop triggers, sells 2 into 95
    assert [(t[1], t[2], t[3]) for t in trades] == [("stop", 95, 2)]
    # the stop's trade at 95 triggered the stop-limit at 96, which rests above the remaining bid
    assert b.best_ask() == 96 and b.remaining("stop_limit") == 3
    assert canceled == []


def test_stop_already_triggered_executes_at_once_and_market_stop_without_liquidity_is_canceled():
    b = OrderBook()
    b.set_last_price(100)
    code, trades, _ = b.add("s", True, 1, stop=99)
    assert code == CANCELED and trades == []
    b.add("s2", True, 1, stop=105)
    b.add("ask", False, 1, 106)
    trades, canceled = b.set_last_price(105)
    assert trades[0][:2] == ("ask", "s2") and canceled == []
    assert b.last_price == 106  # the stop's own trade
    assert b.add("s3", True, 1, stop=108)[0] == STOP_PENDING
    trades, canceled = b.set_last_price(108)
    assert trades == [] and canceled == [("s3", CANCELED)]


def test_self_trade_prevention_stops_taker():
    b = OrderBook()
    b.add("m1", False, 2, 100)
    b.add("mine", False, 2, 101, owner="me")
    b.add("m2", False, 2, 102)
    code, trades, _ = b.add("t", True, 6, 102, owner="me")
    assert code == SELF_TRADE and [t[0] for t in trades] == ["m1"]
    assert b.remaining("mine") == 2 and "t" not in b
    # FOK counts only the volume before the own order
    assert b.add("f", True, 3, 102, FOK, owner="me")[0] == REJECTED_FOK


def test_many_cancels_compact_levels_and_heap():
    b = OrderBook()
    for i in range(2000):
        b.add(i, False, 1, 1000 + i % 50)
    for i in range(2000):
        if i % 10:
            b.cancel(i)
    assert sum(q for _, q in b.depth(False)) == 200
    assert max(len(lv.queue) for lv in b._asks.values()) <= 2 * 4 + 33
    for p in range(1000, 1050):  # empty and refill levels many times: stale heap entries stay bounded
        for i in range(30):
            b.add(("x", p, i), True, 1, 1)
            b.cancel(("x", p, i))
    assert len(b._bid_heap) <= 2 * len(b._bids) + 64
    _, trades, _ = b.add("sweep", True, 1000, 2000)
    assert sum(t[3] for t in trades) == 200


# ---------------------------------------------------------------- reference model


class NaiveBook:
    """Obviously-correct O(n) book: a list sorted on demand."""

    def __init__(self):
        self.orders = {}  # id -> [is_buy, price, qty, seq]
        self.seq = 0

    def _opposite(self, is_buy, limit):
        out = [(i, o) for i, o in self.orders.items() if o[0] != is_buy and (
            limit is None or (o[1] <= limit if is_buy else o[1] >= limit))]
        out.sort(key=lambda x: ((x[1][1] if is_buy else -x[1][1]), x[1][3]))
        return out

    def add(self, oid, is_buy, qty, price, tif, post_only):
        opp = self._opposite(is_buy, price)
        if post_only and opp:
            return REJECTED_POST_ONLY, []
        if tif == FOK and sum(o[2] for _, o in opp) < qty:
            return REJECTED_FOK, []
        trades = []
        for i, o in opp:
            if not qty:
                break
            f = min(qty, o[2])
            trades.append((i, oid, o[1], f))
            o[2] -= f
            qty -= f
            if o[2] == 0:
                del self.orders[i]
        if qty == 0:
            return FILLED, trades
        if price is None or tif != GTC:
            return CANCELED, trades
        self.seq += 1
        self.orders[oid] = [is_buy, price, qty, self.seq]
        return RESTED, trades

    def depth(self, is_buy):
        d = {}
        for o in self.orders.values():
            if o[0] == is_buy:
                d[o[1]] = d.get(o[1], 0) + o[2]
        return sorted(d.items(), reverse=is_buy)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.booleans(), st.integers(1, 9), st.one_of(st.none(), st.integers(95, 105)),
                  st.sampled_from([GTC, GTC, GTC, IOC, FOK]), st.booleans()),
        st.tuples(st.just("cancel"), st.integers(0, 60)),
        st.tuples(st.just("amend"), st.integers(0, 60), st.integers(1, 9), st.one_of(st.none(), st.integers(95, 105))),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ops)
def test_engine_matches_naive_reference(seq):
    fast, ref = OrderBook(), NaiveBook()
    for n, op in enumerate(seq):
        if op[0] == "add":
            _, is_buy, qty, price, tif, post_only = op
            post_only = post_only and price is not None and tif == GTC
            got = fast.add(n, is_buy, qty, price, tif, post_only)
            want = ref.add(n, is_buy, qty, price, tif, post_only)
            assert (got[0], got[1]) == want
        elif op[0] == "cancel":
            oid = op[1]
            if oid in ref.orders:
                assert fast.cancel(oid) == ref.orders.pop(oid)[2]
            else:
                assert oid not in fast
        else:
            _, oid, qty, price = op
            if oid not in ref.orders:
                continue
            o = ref.orders[oid]
            got = fast.amend(oid, qty, price)
            new_price = o[1] if price is None else price
            if new_price == o[1] and qty <= o[2]:
                o[2] = qty
                want = (RESTED, [])
            else:
                del ref.orders[oid]
                want = ref.add(oid, o[0], qty, new_price, GTC, False)
            assert (got[0], got[1]) == want
        assert fast.depth(True) == ref.depth(True)
        assert fast.depth(False) == ref.depth(False)
        for i, o in ref.orders.items():
            assert fast.remaining(i) == o[2]
