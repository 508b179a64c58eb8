"""Helpers for the risk engine tests: a settable clock and a harness that builds orders, fills and events."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

import pytest

from trading.records import (
    NS_PER_S, Fill, Liquidity, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, TimeInForce,
)
from trading.risk import FlattenRequest, RiskEngine, RiskLimits, StateTransition

T0 = 1_700_000_000 * NS_PER_S  # 2023-11-14 22:13:20 UTC


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> int:
        self.t += int(round(seconds * NS_PER_S))
        return self.t


class Harness:
    """One engine on account "acc" with a clock, recording transitions and flatten requests."""

    def __init__(self, limits: dict | RiskLimits | None = None, cash: str = "1000000",
                 prices: dict[str, str] | None = None, instruments=None, t0: int = T0) -> None:
        if not isinstance(limits, RiskLimits):
            limits = RiskLimits.from_dict(limits or {})
        self.clock = Clock(t0)
        self.transitions: list[StateTransition] = []
        self.flattens: list[FlattenRequest] = []
        self.engine = RiskEngine(limits, "acc", Decimal(cash), clock=self.clock, instruments=instruments,
                                 on_transition=self.transitions.append, on_flatten=self.flattens.append)
        self._ids = count()
        for sym, px in (prices if prices is not None else {"BTC/USDT": "100"}).items():
            self.price(sym, px)

    def price(self, symbol: str, px, ts: int | None = None, volume=None) -> None:
        self.engine.on_price(symbol, Decimal(px) if isinstance(px, (str, int)) else px,
                             self.clock.t if ts is None else ts, None if volume is None else Decimal(volume))

    def order(self, side: str = "buy", qty="1", price="100", symbol: str = "BTC/USDT", strategy: str = "s1",
              otype: OrderType | None = None, cid: str | None = None, **kw) -> OrderRequest:
        if otype is None:
            otype = OrderType.LIMIT if price is not None else OrderType.MARKET
        return OrderRequest(
            client_order_id=cid or f"o{next(self._ids)}", account=kw.pop("account", "acc"), strategy=strategy,
            exchange="paper", symbol=symbol, side=Side(side), order_type=otype,
            quantity=Decimal(qty) if isinstance(qty, (str, int)) else qty,
            price=Decimal(price) if isinstance(price, (str, int)) else price, **kw,
        )

    def check(self, *args, **kw):
        return self.engine.check(self.order(*args, **kw))

    def place(self, *args, **kw) -> OrderRequest:
        """An order that must be approved."""
        o = self.order(*args, **kw)
        d = self.engine.check(o)
        assert d.approved, d
        return o

    def fill(self, o: OrderRequest, qty=None, price=None, fee="0", fill_id: str | None = None) -> Fill:
        f = Fill(fill_id or f"f{next(self._ids)}", o.client_order_id, o.account, o.strategy, o.exchange, o.symbol,
                 o.side, Decimal(price) if price is not None else (o.price or Decimal(100)),
                 Decimal(qty) if qty is not None else o.quantity, Decimal(fee), "USDT", Liquidity.TAKER, self.clock.t)
        self.engine.on_fill(f)
        return f

    def event(self, o: OrderRequest, status: OrderStatus, filled="0") -> None:
        filled = Decimal(filled)
        self.engine.on_order_event(OrderEvent(o.client_order_id, o.account, o.strategy, o.symbol, status, filled,
                                              o.quantity - filled, self.clock.t))

    def buy_position(self, qty: str, price: str, symbol: str = "BTC/USDT", strategy: str = "s1",
                     side: str = "buy") -> OrderRequest:
        """Open a position with a market order filled at ``price`` (terminal event included)."""
        o = self.place(side, qty, None, symbol=symbol, strategy=strategy, time_in_force=TimeInForce.IOC)
        self.fill(o, price=price)
        self.event(o, OrderStatus.FILLED, qty)
        return o


@pytest.fixture
def harness():
    """Factory: harness(limits_dict, cash=..., prices=...)."""
    return Harness
