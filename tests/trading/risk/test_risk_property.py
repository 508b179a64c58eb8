"""Property: whatever sequence of orders, fills, cancels (with fills still in flight) and price moves,
if only approved orders are filled, no position ever goes beyond its limit, and the engine's count of
open orders matches the truth."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading.records import OrderStatus, TimeInForce
from trading.risk.liquidation import split_quantity

LOT = Decimal("0.5")
LIMITS = {
    "symbols": {"BTC/USDT": {"max_position": 10, "lot_size": "0.5"}, "ETH/USDT": {"max_position": 4,
                                                                                "lot_size": "0.5"}},
    "strategies": {"a": {"max_gross_exposure": 1500}},
}
MAX_POS = {"BTC/USDT": Decimal(10), "ETH/USDT": Decimal(4)}

op = st.one_of(
    st.tuples(st.just("order"), st.sampled_from(["buy", "sell"]), st.integers(1, 12), st.sampled_from(["a", "b"]),
              st.sampled_from(list(MAX_POS)), st.integers(-3, 3), st.booleans()),
    st.tuples(st.just("fill"), st.integers(0, 10**6), st.integers(1, 12)),
    st.tuples(st.just("cancel"), st.integers(0, 10**6), st.integers(0, 12)),
    st.tuples(st.just("price"), st.sampled_from(list(MAX_POS)), st.integers(-5, 5)),
)


class Model:
    """The test's own truth: each approved order's quantity, seen fills and terminal fill count."""

    def __init__(self) -> None:
        self.orders: dict[str, dict] = {}

    def fillable(self) -> list[str]:
        out = []
        for cid, o in self.orders.items():
            cap = o["final"] if o["final"] is not None else o["req"].quantity
            if cap - o["filled"] > 0:
                out.append(cid)
        return out


# the fixture only hands over the Harness class, so sharing it across examples is safe
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=60))
def test_positions_never_exceed_limits(harness, ops):
    h = harness(LIMITS, cash="100000000", prices={"BTC/USDT": "100", "ETH/USDT": "50"})
    model = Model()
    px = {"BTC/USDT": Decimal(100), "ETH/USDT": Decimal(50)}
    for step in ops:
        h.clock.advance(0.25)
        kind = step[0]
        if kind == "order":
            _, side, lots, strat, sym, offset, market = step
            price = None if market else px[sym] + offset
            o = h.order(side, LOT * lots, price, symbol=sym, strategy=strat,
                        time_in_force=TimeInForce.IOC if market else TimeInForce.GTC)
            if h.engine.check(o).approved:
                model.orders[o.client_order_id] = {"req": o, "filled": Decimal(0), "final": None}
        elif kind == "fill":
            live = model.fillable()
            if live:
                cid = live[step[1] % len(live)]
                o = model.orders[cid]
                cap = o["final"] if o["final"] is not None else o["req"].quantity
                qty = min(LOT * step[2], cap - o["filled"])
                h.fill(o["req"], qty=qty, price=px[o["req"].symbol])
                o["filled"] += qty
        elif kind == "cancel":
            live = [c for c, o in model.orders.items() if o["final"] is None]
            if live:
                cid = live[step[1] % len(live)]
                o = model.orders[cid]
                # the venue may report fills we have not seen yet: they arrive later as "fill" steps
                in_flight = min(LOT * step[2], o["req"].quantity - o["filled"])
                o["final"] = o["filled"] + in_flight
                h.event(o["req"], OrderStatus.CANCELED, o["final"])
        else:
            _, sym, move = step
            px[sym] = max(px[sym] + move, Decimal(10))
            h.price(sym, px[sym])
        positions: dict[str, Decimal] = {}
        for p in h.engine.positions():
            positions[p.symbol] = positions.get(p.symbol, Decimal(0)) + p.quantity
        for sym, q in positions.items():
            assert abs(q) <= MAX_POS[sym], (sym, q)
        open_truth = sum(1 for o in model.orders.values() if o["final"] is None)
        assert h.engine.metrics()["open_orders"] == open_truth


@settings(max_examples=300, deadline=None, derandomize=True)
@given(total=st.integers(1, 10**5), cap=st.integers(100, 10**5), extra=st.integers(0, 9))
def test_liquidation_split_sums_to_position_and_respects_cap(total, cap, extra):
    lot = Decimal("0.01")
    qty = Decimal(total) * lot + Decimal(extra) / 1000  # possibly off-lot
    children = split_quantity(qty, Decimal(cap) * lot, lot)
    assert sum(children) == qty
    assert all(0 < c <= max(Decimal(cap) * lot, lot) for c in children)
    lot_children = [c for c in children if c % lot == 0]
    assert max(lot_children, default=Decimal(0)) - min(lot_children, default=Decimal(0)) <= lot  # near-equal
