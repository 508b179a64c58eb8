"""Small builders shared by the venue tests."""

from __future__ import annotations

from decimal import Decimal as D

from trading.records import Bar, BookLevel, BookSnapshot, Fill, OrderEvent, OrderRequest, OrderType, Side, Tick, TimeInForce

SYM = "BTC/USDT"


def order(cid: str, side: str = "buy", kind: str = "market", qty: str = "1", price: str | None = None,
          stop: str | None = None, tif: str = "gtc", post_only: bool = False, ts: int = 0, strategy: str = "s1",
          account: str = "acc", exchange: str = "sim", symbol: str = SYM) -> OrderRequest:
    return OrderRequest(cid, account, strategy, exchange, symbol, Side(side), OrderType(kind), D(qty),
                        None if price is None else D(price), None if stop is None else D(stop), TimeInForce(tif),
                        post_only, ts)


def bar(ts: int, o: str, h: str, l: str, c: str, v: str = "100", symbol: str = SYM) -> Bar:
    return Bar("sim", symbol, "1m", ts, ts, D(o), D(h), D(l), D(c), D(v))


def book(ts: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]], symbol: str = SYM) -> BookSnapshot:
    return BookSnapshot("sim", symbol, ts, ts, tuple(BookLevel(D(p), D(s)) for p, s in bids),
                        tuple(BookLevel(D(p), D(s)) for p, s in asks))


def tick(ts: int, price: str, amount: str, side: str = "sell", symbol: str = SYM) -> Tick:
    from trading.records import AggressorSide

    return Tick("sim", symbol, ts, ts, D(price), D(amount), AggressorSide(side))


def fills(events: list) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def statuses(events: list) -> list[tuple[str, str, str | None]]:
    """(kind, status-or-price, reason) per event, compact for asserts."""
    out = []
    for e in events:
        if isinstance(e, OrderEvent):
            out.append((e.client_order_id, e.status.value, e.reason))
        else:
            out.append((e.client_order_id, "fill", str(e.price)))
    return out
