"""trading.oms.reconcile: one test per kind of difference, the verdict by drift size, no trade proposed
unless asked."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from trading.oms.reconcile import (
    balance_effect, candidates, external_id, fill_id_of, Kind, reconcile, ReconcileInputError, RecordOrder,
    RecordSnapshot, Tolerance, Verdict, VenueOrder, VenueSnapshot, VenueTrade,
)
from trading.records import Fill, Liquidity, NS_PER_S, OrderEvent, OrderStatus, OrderType, Side

EX = "binance"
T0 = 1_800_000_000 * NS_PER_S
NOW = T0 + 600 * NS_PER_S


def ours_order(cid="o1", status=OrderStatus.ACKNOWLEDGED, qty="1", filled="0", vid="v1", updated=T0) -> RecordOrder:
    return RecordOrder(cid, "momo", "BTC/USDT", Side.BUY, D(qty), D(filled), status, vid, updated)


def venue_order(cid="o1", vid="v1", qty="1", filled="0", status=OrderStatus.ACKNOWLEDGED) -> VenueOrder:
    return VenueOrder(cid, vid, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D("100"), status, D(filled), T0)


def trade(tid="t1", cid="o1", vid="v1", qty="0.4", price="100", ts=T0 + 60 * NS_PER_S) -> VenueTrade:
    return VenueTrade(tid, cid, vid, "BTC/USDT", Side.BUY, D(price), D(qty), D("0.1"), "USDT", Liquidity.MAKER, ts)


def record(*orders, fill_ids=(), expected=None, baseline_ts=None) -> RecordSnapshot:
    return RecordSnapshot("acct", EX, {o.client_order_id: o for o in orders}, frozenset(fill_ids), expected,
                          baseline_ts)


def test_agreement_is_ok_and_lists_nothing():
    rec = reconcile(VenueSnapshot(NOW, [venue_order()], [], {"USDT": D(1000)}),
                    record(ours_order(), expected={"USDT": D(1000)}, baseline_ts=T0))
    assert rec.verdict is Verdict.OK and rec.differences == () and rec.reason == "in agreement"
    assert rec.fills == () and rec.events == () and rec.proposals == ()


def test_missed_fill_is_recorded_as_a_fact_with_the_adapters_fill_id():
    snap = VenueSnapshot(NOW, [venue_order(filled="0.4", status=OrderStatus.PARTIALLY_FILLED)],
                         [trade(cid=None)], {})  # Binance's trade list has no client id: mapped by venue order id
    rec = reconcile(snap, record(ours_order()))
    assert rec.verdict is Verdict.OK
    kinds = [d.kind for d in rec.differences]
    assert kinds == [Kind.MISSED_FILL, Kind.STATUS_MISMATCH]
    (f,) = rec.fills
    assert f.fill_id == fill_id_of(EX, "t1") and f.client_order_id == "o1" and f.strategy == "momo"
    assert (f.quantity, f.price, f.fee, f.fee_currency) == (D("0.4"), D(100), D("0.1"), "USDT")
    assert f.ts == T0 + 60 * NS_PER_S
    (ev,) = rec.events
    assert (ev.status, ev.filled_quantity, ev.remaining_quantity) == (OrderStatus.PARTIALLY_FILLED, D("0.4"), D("0.6"))
    # a fill we already have is not missed
    again = reconcile(snap, record(ours_order(filled="0.4", status=OrderStatus.PARTIALLY_FILLED),
                                   fill_ids={fill_id_of(EX, "t1")}))
    assert again.differences == () and again.fills == ()


def test_an_order_filled_at_the_venue_while_we_looked_away_becomes_filled():
    snap = VenueSnapshot(NOW, [], [trade("t1", qty="0.4"), trade("t2", qty="0.6")], {})
    rec = reconcile(snap, record(ours_order()))
    assert [d.kind for d in rec.differences] == [Kind.MISSED_FILL, Kind.MISSED_FILL, Kind.STATUS_MISMATCH]
    assert sum(f.quantity for f in rec.fills) == D(1)
    (ev,) = rec.events
    assert ev.status is OrderStatus.FILLED and ev.filled_quantity == D(1) and ev.remaining_quantity == 0
    assert rec.queries == () and rec.verdict is Verdict.OK


def test_external_order_is_recorded_never_canceled():
    snap = VenueSnapshot(NOW, [venue_order(cid=None, vid="999")], [], {})
    rec = reconcile(snap, record())
    (d,) = rec.differences
    assert d.kind is Kind.EXTERNAL_ORDER and d.action == "record_external" and rec.verdict is Verdict.OK
    assert rec.external_orders == (snap.open_orders[0],)
    assert d.client_order_id == external_id(EX, snap.open_orders[0])
    assert rec.proposals == () and rec.queries == ()
    # recorded once, it is known the next time: nothing new
    known = RecordOrder(d.client_order_id, "external", "BTC/USDT", Side.BUY, D(1), D(0), OrderStatus.ACKNOWLEDGED,
                        "999", T0, external=True)
    assert reconcile(snap, record(known)).differences == ()


def test_external_trade_after_the_baseline_moves_the_expected_balances():
    t = VenueTrade("x1", None, "999", "BTC/USDT", Side.SELL, D(100), D("0.5"), D(0), "USDT", Liquidity.TAKER,
                   T0 + NS_PER_S)
    snap = VenueSnapshot(NOW, [], [t], {"BTC": D("0.5"), "USDT": D(1050)})
    rec = reconcile(snap, record(expected={"BTC": D(1), "USDT": D(1000)}, baseline_ts=T0))
    assert [d.kind for d in rec.differences] == [Kind.EXTERNAL_TRADE]
    assert rec.fills[0].strategy == "external" and rec.verdict is Verdict.OK
    assert rec.expected_balances == {"BTC": D("0.5"), "USDT": D(1050)}
    # before any baseline it is history the baseline will contain: ignored
    assert reconcile(snap, record()).differences == ()


def test_a_trade_of_an_order_we_could_not_name_yet_is_never_taken_for_someone_elses():
    """The soak's case: the worker was killed after sending order o1 and before storing its venue id; the venue
    filled it.  At the restart the trade names only venue order 1035: it waits (o1 is asked about) instead of
    being recorded as an external trade, and the venue's answer about o1 then maps it to o1."""
    sent = ours_order(status=OrderStatus.SUBMITTING, vid=None)
    t = trade("t36", cid=None, vid="1035", qty="1")
    snap = VenueSnapshot(NOW, [], [t], {"BTC": D(2), "USDT": D("899.9")})
    before = record(sent, expected={"BTC": D(1), "USDT": D(1000)}, baseline_ts=T0)
    first = reconcile(snap, before)
    assert first.fills == () and first.external_orders == ()
    assert [d.kind for d in first.differences] == [Kind.UNATTRIBUTED_TRADE, Kind.UNKNOWN_AT_VENUE]
    assert first.queries == (("o1", "BTC/USDT"),)
    assert first.verdict is Verdict.REDUCING  # o1 itself is unknown until the venue answers
    assert not [d for d in first.differences if d.kind is Kind.BALANCE_DRIFT]  # compared as if recorded
    # the venue answers: o1 is venue order 1035, filled, with its fill
    answer = OrderEvent("o1", "acct", "momo", "BTC/USDT", OrderStatus.FILLED, D(1), D(0), NOW, None, "1035")
    fill = Fill(fill_id_of(EX, "t36"), "o1", "acct", "momo", EX, "BTC/USDT", Side.BUY, D(100), D(1), D("0.1"),
                "USDT", Liquidity.MAKER, t.ts)
    for kw in ({"answers": {"o1": answer}}, {"answers": {"o1": answer}, "answer_fills": [fill]}):
        done = reconcile(snap, before, **kw)
        assert [(f.fill_id, f.client_order_id, f.strategy) for f in done.fills] == [(fill.fill_id, "o1", "momo")]
        assert Kind.EXTERNAL_TRADE not in [d.kind for d in done.differences] and done.verdict is Verdict.OK
    # with no order of ours left unnamed, the same trade is someone else's
    other = reconcile(snap, record(expected={"BTC": D(1), "USDT": D(1000)}, baseline_ts=T0))
    assert [d.kind for d in other.differences] == [Kind.EXTERNAL_TRADE]


def test_order_unknown_at_the_venue_is_queried_then_recorded_from_the_answer():
    snap = VenueSnapshot(NOW, [], [], {})
    rec = reconcile(snap, record(ours_order(status=OrderStatus.UNKNOWN)))
    (d,) = rec.differences
    assert d.kind is Kind.UNKNOWN_AT_VENUE and d.action == "query" and rec.queries == (("o1", "BTC/USDT"),)
    assert rec.verdict is Verdict.REDUCING and rec.events == ()  # never assumed rejected
    answer = OrderEvent("o1", "acct", "momo", "BTC/USDT", OrderStatus.REJECTED, D(0), D(1), NOW, "not_found_at_venue")
    done = reconcile(snap, record(ours_order(status=OrderStatus.UNKNOWN)), answers={"o1": answer})
    assert done.verdict is Verdict.OK and done.queries == ()
    (ev,) = done.events
    assert (ev.status, ev.reason) == (OrderStatus.REJECTED, "not_found_at_venue")
    # found closed, with a fill not reported before: both recorded
    f = Fill(fill_id_of(EX, "t9"), "o1", "acct", "momo", EX, "BTC/USDT", Side.BUY, D(100), D("0.3"), D(0), "USDT",
             Liquidity.MAKER, T0)
    canceled = OrderEvent("o1", "acct", "momo", "BTC/USDT", OrderStatus.CANCELED, D("0.3"), D("0.7"), NOW, "canceled")
    done = reconcile(snap, record(ours_order()), answers={"o1": canceled}, answer_fills=[f])
    assert done.fills == (f,) and [e.status for e in done.events] == [OrderStatus.CANCELED]
    assert [d.kind for d in done.differences] == [Kind.MISSED_FILL, Kind.UNKNOWN_AT_VENUE]


def test_an_order_changed_within_the_settle_window_is_in_flight_not_unknown():
    rec = reconcile(VenueSnapshot(NOW, [], [], {}), record(ours_order(status=OrderStatus.SUBMITTING, updated=NOW - 1)))
    assert rec.differences == () and rec.verdict is Verdict.OK


def test_filled_quantity_mismatch_queries_when_the_venue_is_ahead_and_halts_when_behind():
    ahead = reconcile(VenueSnapshot(NOW, [venue_order(filled="0.5", status=OrderStatus.PARTIALLY_FILLED)], [], {}),
                      record(ours_order()))
    (d,) = ahead.differences
    assert d.kind is Kind.FILLED_MISMATCH and ahead.verdict is Verdict.REDUCING
    assert ahead.queries == (("o1", "BTC/USDT"),)
    behind = reconcile(VenueSnapshot(NOW, [venue_order(filled="0.2", status=OrderStatus.PARTIALLY_FILLED)], [], {}),
                       record(ours_order(filled="0.5", status=OrderStatus.PARTIALLY_FILLED)))
    assert behind.verdict is Verdict.HALTED and "we booked 0.5" in behind.reason


def test_status_mismatch_records_the_venues_status():
    rec = reconcile(VenueSnapshot(NOW, [venue_order()], [], {}), record(ours_order(status=OrderStatus.UNKNOWN)))
    (d,) = rec.differences
    assert d.kind is Kind.STATUS_MISMATCH and rec.events[0].status is OrderStatus.ACKNOWLEDGED
    # a cancel on its way: the venue still showing the order is normal
    assert reconcile(VenueSnapshot(NOW, [venue_order()], [], {}),
                     record(ours_order(status=OrderStatus.CANCEL_PENDING))).differences == ()


@pytest.mark.parametrize("venue_usdt, verdict", [("1000.5", Verdict.OK), ("995", Verdict.REDUCING),
                                                 ("900", Verdict.HALTED), ("1100", Verdict.HALTED)])
def test_balance_drift_small_reduces_large_halts(venue_usdt, verdict):
    tol = Tolerance(relative=D("0.001"), halt_relative=D("0.02"))
    rec = reconcile(VenueSnapshot(NOW, [], [], {"USDT": D(venue_usdt), "BTC": D(1)}),
                    record(expected={"USDT": D(1000), "BTC": D(1)}, baseline_ts=T0), tol)
    assert rec.verdict is verdict
    if verdict is not Verdict.OK:
        (d,) = rec.differences
        assert d.kind is Kind.BALANCE_DRIFT and d.asset == "USDT" and d.venue == D(venue_usdt) and d.ours == D(1000)
        assert "USDT: venue" in rec.reason
    assert rec.proposals == ()  # never a trade by default


def test_missed_fills_count_in_the_expected_balances_before_comparing():
    snap = VenueSnapshot(NOW, [], [trade("t1", qty="1")], {"BTC": D(1), "USDT": D("899.9")})
    rec = reconcile(snap, record(ours_order(), expected={"USDT": D(1000)}, baseline_ts=T0))
    assert rec.verdict is Verdict.OK, rec.reason
    assert rec.expected_balances == {"BTC": D(1), "USDT": D("899.9")}


def test_only_orders_and_trades_when_balances_are_not_checked():
    rec = reconcile(VenueSnapshot(NOW, [], [], {"USDT": D(1)}), record(expected={"USDT": D(1000)}, baseline_ts=T0),
                    check_balances=False)
    assert rec.verdict is Verdict.OK and rec.differences == ()


def test_fix_with_trades_only_proposes():
    snap = VenueSnapshot(NOW, [venue_order()], [], {"BTC": D("1.5"), "USDT": D(1000)})
    rec = reconcile(snap, record(ours_order(), expected={"BTC": D(1), "USDT": D(1000)}, baseline_ts=T0),
                    fix_with_trades=True)
    assert rec.verdict is Verdict.HALTED  # proposing changes nothing about the verdict
    (p,) = rec.proposals
    assert (p.side, p.quantity, p.symbol, p.order_type, p.strategy) == (Side.SELL, D("0.5"), "BTC/USDT",
                                                                         OrderType.MARKET, "reconciliation")


def test_helpers_and_bad_input():
    f = Fill("f", "o1", "a", "s", EX, "BTC/USDT", Side.SELL, D(100), D(2), D("0.5"), "BNB", Liquidity.TAKER, T0)
    assert balance_effect(f) == {"BTC": D(-2), "USDT": D(200), "BNB": D("-0.5")}
    snap = VenueSnapshot(NOW, [venue_order(cid=None, vid="9")], [trade()], {})
    cids, vids, fids = candidates(snap, EX)
    assert cids == {"o1", external_id(EX, snap.open_orders[0])} and vids == {"v1", "9"}
    assert fids == {fill_id_of(EX, "t1")}
    with pytest.raises(ReconcileInputError, match="halt_relative"):
        Tolerance(relative=D("0.1"), halt_relative=D("0.01"))
    with pytest.raises(ReconcileInputError, match="absolute"):
        Tolerance(absolute=D(-1))


def test_a_periodic_run_leaves_recent_trades_to_the_stream_but_counts_them_in_the_balances():
    young = trade("t1", qty="1", ts=NOW - NS_PER_S)  # settle window: 5 s
    snap = VenueSnapshot(NOW, [], [young],
                         {"BTC": D(1), "USDT": D("899.9")})
    ours = record(ours_order(), expected={"USDT": D(1000)}, baseline_ts=T0)
    rec = reconcile(snap, ours, skip_recent_trades=True)
    assert rec.differences == () and rec.fills == () and rec.verdict is Verdict.OK  # no drift, no unknown order
    assert [d.kind for d in reconcile(snap, ours).differences] == [Kind.MISSED_FILL, Kind.STATUS_MISMATCH]


def test_an_open_order_listed_without_its_client_id_is_still_ours_by_its_venue_id():
    rec = reconcile(VenueSnapshot(NOW, [venue_order(cid=None, vid="v1")], [], {}), record(ours_order()))
    assert rec.differences == () and rec.external_orders == ()
