"""Coinbase Advanced Trade through ccxt.pro (docs/research/ccxt-live-venues.md §3).

- our client id goes as ``client_order_id`` (ccxt drops ``clientOrderId`` and would invent one);
- a market buy is sent with base_size (ccxt would otherwise need a price to compute quote_size);
- there is no lookup by client id: an order is found through the historical batch endpoint (fetch_orders since
  a time) filtered on client_order_id, as nautilus_trader does; with the venue order id known, directly;
- the WebSocket offers only watch_orders (no watch_my_trades / watch_balance): fills come over REST while
  orders are open (the housekeeper's fallback polling);
- Coinbase has no test network: sandbox mode is refused.
"""

from __future__ import annotations

import copy

import ccxt.pro as ccxtpro

from streaming.venues.ccxt_venue import CcxtVenue, VenueCallError, _Order, with_response_hook
from streaming.venues.errors import Outcome
from streaming.venues.rules import Prepared
from trading.records import OrderRequest, OrderStatus, OrderType, Side, TimeInForce

_Coinbase = with_response_hook(ccxtpro.coinbase)
NOT_FOUND = Outcome("not_found", "not_found_at_venue")


class CoinbaseVenue(CcxtVenue):
    exchange_name = "coinbase"
    ws_streams = ("orders",)
    clock_tolerance_ms = 4000  # ccxt signs Coinbase's JWTs with the local clock (nbf checked with a few s leeway)
    trade_lookback_ms = 5 * 60 * 1000
    order_lookback_ms = 24 * 3600 * 1000  # how far back a client id is searched when the order's time is unknown

    def __init__(self, **kwargs):
        if kwargs.get("sandbox"):
            raise ValueError("coinbase has no test network: TRADELOOP_MODE=sandbox is not available for it "
                             "(use binance, or paper)")
        super().__init__(**kwargs)

    def build_exchange(self):
        options = {"fetchBalance": "v3PrivateGetBrokerageAccounts"}
        options.update(self._exchange_options)
        exchange = _Coinbase({"apiKey": self._api_key, "secret": self._secret, "enableRateLimit": True,
                              "timeout": int(self.timeout_s * 1000), "options": options})
        exchange.has["fetchCurrencies"] = False  # three /v2 endpoints the adapter does not need
        if self.api_url:
            base = self.api_url
            urls = copy.deepcopy(exchange.urls)
            urls["api"]["rest"] = base
            # the user channel at <ws base>/ws (Coinbase's own host serves it at its root)
            urls["api"]["ws"] = ("ws" + base[4:] if base.startswith("http") else base) + "/ws"
            exchange.urls = urls
        return exchange

    async def create_order(self, order: OrderRequest, prepared: Prepared) -> dict:
        params: dict = {"client_order_id": order.client_order_id}
        price = None
        if order.order_type is OrderType.LIMIT:
            price = float(prepared.price)
            if order.post_only:
                params["postOnly"] = True
            elif order.time_in_force is not TimeInForce.GTC:
                params["timeInForce"] = order.time_in_force.value.upper()
        elif order.side is Side.BUY:
            # the order's quantity is in the base currency: send it as base_size, not a quote amount
            params["createMarketBuyOrderRequiresPrice"] = False
            params["order_configuration"] = {"market_market_ioc": {"base_size": str(prepared.amount)}}
        answer = await self._call("create_order", self.exchange.create_order, order.symbol,
                                  order.order_type.value, order.side.value, float(prepared.amount), price, params)
        if answer.get("id") is not None and not answer.get("status"):
            # the create answer carries only ids: read the order back for its status, and its fills if it has some
            vid = str(answer["id"])
            found = await self._fetch_order(vid, order.symbol)
            if found is None:
                return answer
            if (found.get("filled") or 0) > 0:
                found = {**found, "trades": await self.fetch_order_trades(order.symbol, vid, None)}
            return found
        return answer

    def status_of(self, order: dict):
        raw = str((order.get("info") or {}).get("status") or "").upper()
        if raw == "EXPIRED":  # ccxt unifies EXPIRED and FAILED as canceled
            return OrderStatus.EXPIRED
        if raw == "FAILED":
            return OrderStatus.REJECTED
        return super().status_of(order)

    async def cancel_order(self, tracked: _Order) -> dict:
        vid = tracked.venue_order_id
        if vid is None:
            found = await self.fetch_by_client_id(tracked.cid, tracked.request.symbol, None)
            if found is None:
                raise VenueCallError(NOT_FOUND, f"no order {tracked.cid} at coinbase")
            vid = str(found["id"])
            self._register_vid(tracked, vid)
        await self._call("cancel_order", self.exchange.cancel_order, vid, tracked.request.symbol)
        return await self._fetch_order(vid, tracked.request.symbol) or {"id": vid, "clientOrderId": tracked.cid}

    async def _fetch_order(self, vid: str, symbol: str) -> dict | None:
        try:
            return await self._call("fetch_order", self.exchange.fetch_order, vid, symbol)
        except VenueCallError as exc:
            if exc.outcome.kind == "not_found" or exc.status == 404:  # coinbase: 404 NOT_FOUND, ExchangeError
                return None
            raise

    async def fetch_by_client_id(self, client_order_id: str, symbol: str,
                                 venue_order_id: str | None) -> dict | None:
        if venue_order_id is not None:
            return await self._fetch_order(venue_order_id, symbol)
        tracked = self._orders.get(client_order_id)
        since = (tracked.request.ts // 1_000_000 - 60_000 if tracked and tracked.request.ts
                 else self._started_ms - self.order_lookback_ms)
        orders = await self._call("fetch_orders", self.exchange.fetch_orders, symbol, since, 1000)
        for order in orders:
            if order.get("clientOrderId") == client_order_id:
                return order
        return None

    async def fetch_trades_since(self, symbol: str) -> list[dict]:
        newest = self._last_trade.get(symbol)
        since = newest[0] if newest is not None else self._started_ms - self.trade_lookback_ms
        return await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, since, 1000)

    async def fetch_order_trades(self, symbol: str, venue_order_id: str, since_ms: int | None) -> list[dict]:
        trades = await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, since_ms, 1000,
                                  {"order_id": venue_order_id})
        return [t for t in trades if str(t.get("order")) == venue_order_id]
