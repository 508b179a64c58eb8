"""Manual orders' parsing and shape (trading.oms.manual): one line naming the bad field; a deterministic client
order id per command; the slot ``manual``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.oms.manual import MANUAL, ManualOrderError, manual_request, not_cancellable, parse_manual_order
from trading.records import OrderStatus, OrderType, Side


def test_parse_market_and_limit_orders():
    m = parse_manual_order({"symbol": "BTC/USDT", "side": "sell", "quantity": "0.5"})
    assert (m.side, m.quantity, m.order_type, m.price) == (Side.SELL, Decimal("0.5"), OrderType.MARKET, None)
    lim = parse_manual_order({"symbol": "BTC/USDT", "side": "buy", "quantity": 0.25, "order_type": "limit",
                              "price": "41000.5"})
    assert (lim.quantity, lim.order_type, lim.price) == (Decimal("0.25"), OrderType.LIMIT, Decimal("41000.5"))


@pytest.mark.parametrize("fields, message", [
    ({"side": "buy", "quantity": "1"}, "needs its `symbol`"),
    ({"symbol": "X", "side": "hold", "quantity": "1"}, "side must be buy or sell"),
    ({"symbol": "X", "side": "buy", "quantity": "0"}, "quantity must be a finite decimal > 0"),
    ({"symbol": "X", "side": "buy", "quantity": "NaN"}, "quantity must be a finite decimal > 0"),
    ({"symbol": "X", "side": "buy", "quantity": "abc"}, "quantity 'abc' is not a decimal number"),
    ({"symbol": "X", "side": "buy", "quantity": True}, "quantity must be a decimal number"),
    ({"symbol": "X", "side": "buy", "quantity": "1", "order_type": "stop"}, "order_type must be market or limit"),
    ({"symbol": "X", "side": "buy", "quantity": "1", "order_type": "limit"}, "a limit order needs a price"),
    ({"symbol": "X", "side": "buy", "quantity": "1", "price": "10"}, "a market order has none"),
])
def test_bad_fields_are_named(fields, message):
    with pytest.raises(ManualOrderError, match=message.replace("(", r"\(")):
        parse_manual_order(fields)


def test_request_is_the_manual_slot_with_an_id_of_the_command():
    m = parse_manual_order({"symbol": "BTC/USDT", "side": "buy", "quantity": "1"})
    a = manual_request(m, account="acct", exchange="sim", command_id="c1", ts=5)
    assert (a.strategy, a.account, a.ts) == (MANUAL, "acct", 5)
    assert a.client_order_id == manual_request(m, account="acct", exchange="sim", command_id="c1", ts=9).client_order_id
    assert a.client_order_id != manual_request(m, account="acct", exchange="sim", command_id="c2", ts=5).client_order_id
    assert not_cancellable("x", None) == "no open order 'x' in this account"
    assert not_cancellable("x", OrderStatus.FILLED) == "order 'x' is already filled: nothing to cancel"
