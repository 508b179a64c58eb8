"""Binance spot through ccxt.pro (docs/research/ccxt-live-venues.md §1-2).

- load_markets reads only GET /api/v3/exchangeInfo (spot, no currencies, no margin pairs);
- orders: our client id as newClientOrderId; post-only is LIMIT_MAKER; IOC/FOK as timeInForce; market orders go
  without a price (with one, ccxt would send quoteOrderQty);
- an order is found by client id (GET /order?origClientOrderId=), cancelled by it (the cancel answer's
  clientOrderId is the cancel's own id: the original is info.origClientOrderId);
- missed fills are fetched with myTrades fromId = newest trade seen + 1;
- with ``api_url`` set, REST goes to <api_url>/api/v3 and the user-data WebSocket to <ws api_url>/ws-api/v3;
  every other endpoint points at a dead local port, so an unexpected call fails instead of reaching out.
"""

from __future__ import annotations

import copy

import ccxt.pro as ccxtpro

from streaming.venues.ccxt_venue import CcxtVenue, VenueCallError, _Order, with_response_hook
from streaming.venues.rules import Prepared
from trading.records import OrderRequest, OrderType, TimeInForce

_Binance = with_response_hook(ccxtpro.binance)
DEAD = "127.0.0.1:9"  # discard port: nothing listens; a call we did not plan for fails at once


def _dead_urls(value, scheme: str, key: str = ""):
    if isinstance(value, dict):
        return {k: _dead_urls(v, scheme, k) for k, v in value.items()}
    return f"{scheme}://{DEAD}/{key}" if isinstance(value, str) else value


class BinanceVenue(CcxtVenue):
    exchange_name = "binance"
    ws_streams = ("orders", "trades", "balance")
    trade_lookback_ms = 5 * 60 * 1000  # first resync after start: trades of the last five minutes

    def build_exchange(self):
        options = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                   "fetchMargins": False, "adjustForTimeDifference": False,
                   "createOrder": {"quoteOrderQty": False}}
        options.update(self._exchange_options)
        exchange = _Binance({"apiKey": self._api_key, "secret": self._secret, "enableRateLimit": True,
                             "timeout": int(self.timeout_s * 1000), "options": options})
        if self.sandbox:
            exchange.set_sandbox_mode(True)  # Binance's spot test network (keys made there)
        if self.api_url:
            base = self.api_url
            ws_base = "ws" + base[4:] if base.startswith("http") else base
            urls = copy.deepcopy(exchange.urls)
            api = urls["api"]
            for key, value in list(api.items()):
                api[key] = _dead_urls(value, "ws" if key == "ws" else "http", key)
            api["public"] = api["private"] = f"{base}/api/v3"
            api["sapi"] = f"{base}/sapi/v1"
            api["ws"]["ws-api"]["spot"] = f"{ws_base}/ws-api/v3"
            exchange.urls = urls
        return exchange

    async def check_account(self) -> str | None:
        # with "use BNB to pay fees" on, commissions come in BNB: the ledger books fees in the traded pair's
        # currencies only (no rate to value a third one), so such an account would stop at its first fill
        if self.sandbox:
            return None  # the spot test network has no /sapi endpoints (and no BNB fee discount)
        setting = await self._call("bnb_burn", self.exchange.sapi_get_bnbburn)
        if setting.get("spotBNBBurn") in (True, "true"):
            return ("the account pays trading fees in BNB ('Use BNB to pay for fees' is on): tradeloop books fees "
                    "only in the traded pair's currencies; turn the setting off on Binance, or use another account")
        return None

    def client_id_of(self, order: dict) -> str | None:
        info = order.get("info") or {}
        return info.get("origClientOrderId") or order.get("clientOrderId") or None

    async def create_order(self, order: OrderRequest, prepared: Prepared) -> dict:
        params: dict = {"newClientOrderId": order.client_order_id}
        price = None
        if order.order_type is OrderType.LIMIT:
            price = float(prepared.price)
            if order.post_only:
                params["postOnly"] = True  # LIMIT_MAKER: refused by the venue if it would take
            elif order.time_in_force is not TimeInForce.GTC:
                params["timeInForce"] = order.time_in_force.value.upper()
        return await self._call("create_order", self.exchange.create_order, order.symbol, order.order_type.value,
                                order.side.value, float(prepared.amount), price, params)

    async def cancel_order(self, tracked: _Order) -> dict:
        return await self._call("cancel_order", self.exchange.cancel_order, None, tracked.request.symbol,
                                {"origClientOrderId": tracked.cid})

    async def fetch_by_client_id(self, client_order_id: str, symbol: str,
                                 venue_order_id: str | None) -> dict | None:
        try:
            return await self._call("fetch_order", self.exchange.fetch_order, None, symbol,
                                    {"origClientOrderId": client_order_id})
        except VenueCallError as exc:
            if exc.outcome.kind == "not_found":
                return None
            raise

    async def fetch_trades_since(self, symbol: str) -> list[dict]:
        newest = self._last_trade.get(symbol)
        if newest is not None and newest[1].isdigit():
            # fromId cannot be combined with startTime: the trade after the newest seen, onwards
            return await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, None, 1000,
                                    {"fromId": int(newest[1]) + 1})
        return await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol,
                                self._started_ms - self.trade_lookback_ms, 1000)

    async def fetch_order_trades(self, symbol: str, venue_order_id: str, since_ms: int | None) -> list[dict]:
        return await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, None, 1000,
                                {"orderId": venue_order_id})
