"""Trader.restore: rebuilding from the stored fills and bars is not a live event.  And the Trader's ports:
a venue implementing only trading.ports.ExecutionVenue plugs in; slot capabilities are declared."""

from __future__ import annotations

from decimal import Decimal

from tests.streaming.conftest import sim_ticks


def _trader(account: str, venue=None):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    return Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                  limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()}, venue=venue)


def test_restore_rebuilds_positions_without_tripping_anomaly_counters():
    from streaming.trader import Restored

    live = _trader("restore-a")
    for t in sim_ticks(60):
        live.on_tick(t)
    batch = live.drain()
    assert batch.fills and batch.bars
    assert live.engine.fills == []  # drained: a 24/7 worker's memory does not grow with its fills
    assert "fill_without_open_order" not in live.risk.counters

    again = _trader("restore-a")
    again.restore(Restored(fills=batch.fills, bars=sorted(batch.bars, key=lambda b: b.exchange_ts),
                           known_order_ids={f.client_order_id for f in batch.fills}))
    # same positions as the live trader, and the replay left no anomaly behind
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        assert again.portfolio.position(sym, "t").quantity == live.portfolio.position(sym, "t").quantity
    assert not {"fill_without_open_order", "price_out_of_order"} & set(again.risk.counters), again.risk.counters
    # ...while a real out-of-order price after the restore is still counted
    last = max(b.exchange_ts for b in batch.bars)
    again.risk.on_price("BTC/USDT", Decimal(1), last - 10**12)
    again.risk.on_price("BTC/USDT", Decimal(1), last - 2 * 10**12)
    assert again.risk.counters["price_out_of_order"] >= 1


class PortOnlyVenue:
    """A venue written against trading.ports.ExecutionVenue alone, as a live adapter would be: it
    acknowledges at submit and reports fills later, from ``on_tick`` (what its socket delivered)."""

    def __init__(self) -> None:
        self.working: dict[str, object] = {}
        self.submitted: list[str] = []
        self.fill_ids: list[str] = []

    def submit(self, order):
        from trading.records import OrderEvent, OrderStatus

        self.submitted.append(order.client_order_id)
        self.working[order.client_order_id] = order
        return [OrderEvent(order.client_order_id, order.account, order.strategy, order.symbol,
                           OrderStatus.ACKNOWLEDGED, Decimal(0), order.quantity, order.ts)]

    def cancel(self, client_order_id, ts):
        return []

    def replace(self, client_order_id, new_quantity, new_price, ts):
        return []

    def open_orders(self, symbol=None):
        return [o for o in self.working.values() if symbol is None or o.symbol == symbol]

    def on_bar(self, bar):
        return []

    def on_tick(self, tick):
        from trading.records import Fill, Liquidity, OrderEvent, OrderStatus, stable_id

        out = []
        for cid, o in list(self.working.items()):
            if o.symbol == tick.symbol:
                del self.working[cid]
                self.fill_ids.append(stable_id("live-fill", cid))
                out += [Fill(self.fill_ids[-1], cid, o.account, o.strategy, tick.exchange, o.symbol, o.side,
                             tick.price, o.quantity, Decimal(0), o.symbol.split("/")[1], Liquidity.TAKER, tick.exchange_ts),
                        OrderEvent(cid, o.account, o.strategy, o.symbol, OrderStatus.FILLED, o.quantity, Decimal(0),
                                   tick.exchange_ts)]
        return out


def test_a_venue_implementing_only_the_port_plugs_into_the_trader():
    from streaming.trader import Restored
    from trading.ports import ExecutionVenue

    venue = PortOnlyVenue()
    assert isinstance(venue, ExecutionVenue)
    live = _trader("port-a", venue)
    for t in sim_ticks(60):
        live.on_tick(t)
    batch = live.drain()
    assert batch.fills and len(batch.orders) == len(venue.submitted)
    assert [f.fill_id for f in batch.fills] == venue.fill_ids  # the venue's fills, as it reported them
    for sym in {f.symbol for f in batch.fills}:
        held = sum((f.quantity if f.side.value == "buy" else -f.quantity) for f in batch.fills if f.symbol == sym)
        assert live.portfolio.position(sym, "t").quantity == held
    assert "fill_without_open_order" not in live.risk.counters
    # restarted with the same venue kind: ids known from Postgres are refused, not re-sent
    again_venue = PortOnlyVenue()
    again = _trader("port-a", again_venue)
    again.restore(Restored(fills=batch.fills, known_order_ids=set(venue.submitted)))
    assert again.venue.submit(batch.orders[0])[0].reason == "known_client_order_id" and again_venue.submitted == []


def test_stream_slot_capabilities_are_declared_not_sniffed():
    from streaming.ml_strategy import RegistrySignal
    from streaming.portfolio_strategy import TargetRebalance
    from trading.strategies import create_strategy
    from trading.strategies.capabilities import ModelBacked, OwnSignals, Replayable, WeightsBacked

    assert {ModelBacked, OwnSignals, Replayable} <= set(RegistrySignal.__mro__)
    assert WeightsBacked in TargetRebalance.__mro__ and not hasattr(TargetRebalance, "models")
    plain = create_strategy("sma_cross", {})
    assert not any(isinstance(plain, c) for c in (ModelBacked, WeightsBacked, OwnSignals, Replayable))
    trader = _trader("caps-a")
    assert trader.ml_strategies() == {} == trader.weights_strategies() == trader.model_driven_strategies()


def test_live_ticks_and_the_bars_they_close_raise_no_anomaly():
    """A bar's close reaches the risk gate at the bar's end, not its open: in time order with the ticks
    (marked at its open it came after newer ticks, a false price_out_of_order at every bar)."""
    trader = _trader("no-anomaly")
    ticks = sim_ticks(30, "sim")
    for t in ticks:
        trader.on_tick(t)
        trader.drain()
    assert trader.counters["ticks"] == len(ticks) and len(trader.bars.open_ts) == 3
    assert dict(trader.risk.counters) == {}
