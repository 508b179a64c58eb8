"""A fake Binance SPOT exchange on 127.0.0.1: the REST API subset and the WebSocket-API user-data stream that
ccxt 4.5.90 (ccxt.async_support.binance / ccxt.pro.binance) calls, so the real ccxt code signs, sends and parses.

Use in-process (own thread and event loop)::

    fake = FakeBinance()                       # account "test-key"/"test-secret", default balances
    url = fake.start()                         # "http://127.0.0.1:<port>"
    ex = binance_client(url, "test-key", "test-secret", pro=True)
    ...; await ex.close(); fake.stop()

or as a subprocess (the exchange outlives a killed trading worker)::

    python -m tests.fakes.binance --port P --state-file F [--api-key K --secret S]

It prints ``listening http://127.0.0.1:P`` when ready; state (orders, fills, balances) is loaded from and
saved to F after every change.  ``Control(url)`` (tests/fakes/core.py) drives it through ``POST /_fake/<op>``
with the same methods as the in-process object (FakeServer in core.py): set_price, trade (someone else's trade:
fills crossing resting orders), set_balance, add_account, place / cancel (an order placed or canceled at the
venue by someone else), fault, clear_faults, books, accepted_count, drop_ws, ws_clients.

URL keys overridden by ``binance_client`` (the adapter's ``venue_api_url`` must do the same):
  urls['api']['public'] and ['private']      -> <base>/api/v3
  urls['api']['sapi']                        -> <base>/sapi/v1      (only GET system/status is served)
  urls['api']['ws']['ws-api']['spot']        -> ws://<host:port>/ws-api/v3   (user data: watch_orders, ...)
  every other string under urls['api'] and urls['api']['ws'] -> http(s)://127.0.0.1:9/<key> (a dead port,
  so a call nobody expected fails at once instead of reaching the internet)
and sets options fetchMarkets.types=['spot'], fetchCurrencies=False, fetchMargins=False (load_markets is
then one GET /api/v3/exchangeInfo), fetchOpenOrders.warnWithoutSymbol=False.

Served: GET ping, time, exchangeInfo, ticker/price, ticker/bookTicker, ticker/24hr; signed (HMAC-SHA256 over the
raw query string + raw body, X-MBX-APIKEY, timestamp/recvWindow): POST/GET/DELETE order, GET openOrders,
DELETE openOrders, GET myTrades, GET account.  Every answer carries X-MBX-USED-WEIGHT-1M (and order posts
X-MBX-ORDER-COUNT-10S/1D).  Errors are Binance's {"code","msg"} with the real codes and texts.

A newClientOrderId is refused as a duplicate (-2010 "Duplicate order sent.") if ANY earlier order of the account
had it (real Binance only checks open orders; the stricter rule lets tests assert accepted_count() <= 1).

Faults, ``fake.fault(kind, count=1, duration=None, **params)`` (count = next N matching requests; with a
duration, until it ends; ``route`` is a regex over "<METHOD> <endpoint>", e.g. "POST order", "GET openOrders"):
  http_5xx              status=503, accept=True, route="POST order": the request is processed (accept=True)
                        and the client gets a 5xx with a non-JSON body -> ccxt ExchangeNotAvailable
  timeout               seconds=3, accept=True, route="POST order": processed (or not) then the answer waits
                        past the client's timeout -> ccxt RequestTimeout
  rate_limit            retry_after=1, route=any: 429 -1003 + Retry-After -> DDoSProtection (nothing processed)
  ban                   retry_after=60, route=any: 418 -1003 "IP banned until" -> DDoSProtection
  maintenance           route=any: 503 {"code":1,"msg":"System is under maintenance."} -> OnMaintenance;
                        GET sapi/v1/system/status says {"status":1,"msg":"system maintenance"}
  clock_skew            offset_ms: the server clock runs offset_ms ahead (-1021 -> InvalidNonce); lasts until
                        cleared or its duration ends (count is ignored)
  insufficient_balance  next order(s) refused -2010 insufficient balance -> InsufficientFunds
  partial_fill          fraction=0.5, rest="expire"|"rest": a taking order fills only that fraction; the rest
                        of a MARKET/IOC order expires, or ("rest") the market remainder fills on later trades;
                        the rest of a crossing GTC limit rests at its limit
  ws_silent             user-data events are dropped (the socket stays open and answers pings) until cleared
                        or its duration ends
  bnb_burn              GET sapi/v1/bnbBurn says the account pays fees in BNB ("spotBNBBurn": true) while armed
Natural faults: a duplicate client order id (send it again), fills while no websocket is connected
(fake.trade(...) with no client: the events are lost, as on Binance), insufficient balance (set_balance),
``fake.drop_ws()`` closes every user-data socket.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import itertools
import json
import re
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakes.core import Exchange, FakeServer, Fill, Order, SymbolSpec, VenueError, fmt

DEFAULT_KEY = "test-key"
DEFAULT_SECRET = "test-secret"
DEFAULT_BALANCES = {"USDT": "100000", "BTC": "1", "ETH": "10", "SOL": "100"}
CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
DEAD = "127.0.0.1:9"

# request weights (Binance's, for the X-MBX-USED-WEIGHT-1M header)
WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 20, "ticker/price": 2, "ticker/bookTicker": 2,
           "ticker/24hr": 2, "order": 1, "GET order": 4, "openOrders": 6, "myTrades": 20, "account": 20}

MSG_INSUFFICIENT = "Account has insufficient balance for requested action."


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _missing(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def venue_symbol(spec: SymbolSpec) -> str:
    return spec.base + spec.quote


def _split_signature(raw: str) -> tuple[str, str | None]:
    keep, sig = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            sig = part[len("signature="):]
        else:
            keep.append(part)
    return "&".join(keep), sig


class _Session:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self.account: str | None = None
        self.sub_id: int | None = None


class FakeBinance(FakeServer):
    def __init__(self, specs: list[SymbolSpec] | None = None, api_key: str = DEFAULT_KEY,
                 secret: str = DEFAULT_SECRET, balances: dict[str, Any] | None = None,
                 state_file: str | None = None, notional_filter: str = "NOTIONAL",
                 taker_fee: str = "0.001", maker_fee: str = "0.001"):
        ex = Exchange(specs, taker_fee=taker_fee, maker_fee=maker_fee)
        ex.add_account(api_key, secret, DEFAULT_BALANCES if balances is None else balances)
        super().__init__(ex, state_file)
        self.notional_filter = notional_filter  # "NOTIONAL" (current Binance) or "MIN_NOTIONAL" (older)
        self.by_venue = {venue_symbol(s): s.symbol for s in ex.specs.values()}
        self.sessions: list[_Session] = []
        self._sub_ids = itertools.count(0)
        self._weights: collections.deque = collections.deque()  # (monotonic time, weight)
        self._orders_10s: collections.deque = collections.deque()
        self._orders_day = 0
        ex.listeners.append(self._on_event)

    # ---- routes ---------------------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws-api/v3", self._ws_api)
        app.router.add_get("/sapi/v1/system/status", self._system_status)
        app.router.add_get("/sapi/v1/bnbBurn", self._bnb_burn)
        app.router.add_route("*", "/api/v3/{endpoint:.*}", self._rest)

    async def on_shutdown(self) -> None:
        for s in list(self.sessions):
            await s.ws.close()

    async def _system_status(self, request: web.Request) -> web.Response:
        headers = self._headers(1, False)
        if self.ex.active_fault(("maintenance",), route="GET system/status", consume=False):
            return web.json_response({"status": 1, "msg": "system maintenance"}, headers=headers)
        return web.json_response({"status": 0, "msg": "normal"}, headers=headers)

    async def _bnb_burn(self, request: web.Request) -> web.Response:
        """The account's "use BNB to pay fees" setting: on while a ``bnb_burn`` fault is armed."""
        raw_query = request.raw_path.partition("?")[2]
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        try:
            with self.ex.lock:
                self._authenticate(request, raw_query, "", params)
        except BinanceError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)
        on = bool(self.ex.active_fault(("bnb_burn",), consume=False))
        return web.json_response({"spotBNBBurn": on, "interestBNBBurn": False}, headers=self._headers(1, False))

    def _used_weight(self, add: int) -> int:
        now = time.monotonic()
        self._weights.append((now, add))
        while self._weights and self._weights[0][0] < now - 60:
            self._weights.popleft()
        return sum(w for _, w in self._weights)

    def _headers(self, weight: int, order_post: bool) -> dict:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self._used_weight(weight))}
        if order_post:
            now = time.monotonic()
            self._orders_10s.append(now)
            while self._orders_10s and self._orders_10s[0] < now - 10:
                self._orders_10s.popleft()
            self._orders_day += 1
            headers["X-MBX-ORDER-COUNT-10S"] = str(len(self._orders_10s))
            headers["X-MBX-ORDER-COUNT-1D"] = str(self._orders_day)
        return headers

    async def _rest(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"].strip("/")
        method = request.method
        route = f"{method} {endpoint}"
        self.ex.requests.append((method, endpoint))
        weight = WEIGHTS.get(route, WEIGHTS.get(endpoint, 1))
        headers = self._headers(weight, route == "POST order")
        raw_query = request.raw_path.partition("?")[2]
        raw_body = await request.text() if request.can_read_body else ""

        def error(exc: BinanceError, extra: dict | None = None) -> web.Response:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status,
                                     headers={**headers, **(extra or {})})

        ex = self.ex
        if ex.active_fault(("maintenance",), route):
            return error(BinanceError(1, "System is under maintenance.", 503))
        ban = ex.active_fault(("ban",), route)
        if ban:
            retry = int(ban.params.get("retry_after", 60))
            until = int(time.time() * 1000) + retry * 1000
            return error(BinanceError(-1003, f"Way too much request weight used; IP banned until {until}. Please "
                                             "use WebSocket Streams for live updates to avoid bans.", 418),
                         {"Retry-After": str(retry)})
        limited = ex.active_fault(("rate_limit",), route)
        if limited:
            return error(BinanceError(-1003, "Too much request weight used; current limit is 6000 request weight "
                                             "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                                             "polling the API.", 429),
                         {"Retry-After": str(int(limited.params.get("retry_after", 1)))})
        timeout = ex.active_fault(("timeout",), route, default_route="POST order")
        server_error = ex.active_fault(("http_5xx",), route, default_route="POST order")
        for fault in (timeout, server_error):
            if fault and not _truthy(fault.params.get("accept", True)):
                if fault is timeout:
                    await asyncio.sleep(float(fault.params.get("seconds", 3)))
                return web.Response(status=int(fault.params.get("status", 503)), text="Service Unavailable",
                                    headers=headers)
        try:
            params = dict(parse_qsl(raw_query, keep_blank_values=True))
            params.update(parse_qsl(raw_body, keep_blank_values=True))
            with ex.lock:  # one consistent view against the test thread's trade()/set_balance()
                handler = self._public.get(route)
                if handler is not None:
                    result = handler(self, params)
                else:
                    handler = self._private.get(route)
                    if handler is None:
                        raise BinanceError(-1000 if endpoint else -1100, f"Unknown endpoint {route}.", 404)
                    account = self._authenticate(request, raw_query, raw_body, params)
                    result = handler(self, account, params)
            response = web.json_response(result, headers=headers)
        except BinanceError as exc:
            response = error(exc)
        finally:
            if method != "GET":
                self.save()
        # the request was processed (accepted or refused); the client gets its answer late, or a 5xx instead
        if timeout:
            await asyncio.sleep(float(timeout.params.get("seconds", 3)))
        if server_error:
            return web.Response(status=int(server_error.params.get("status", 503)), text="Service Unavailable",
                                headers=headers)
        return response

    # ---- auth ---------------------------------------------------------------------------------------------
    def _check_time(self, params: dict) -> None:
        ts = params.get("timestamp")
        if not ts:
            raise _missing("timestamp")
        try:
            ts = int(ts)
            window = int(params.get("recvWindow", 5000))
        except ValueError:
            raise BinanceError(-1100, "Illegal characters found in parameter 'timestamp'.") from None
        if window > 60000:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        server = self.ex.server_ms()
        if ts > server + 1000 or server - ts > window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _key_account(self, key: str | None):
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        acct = self.ex.accounts.get(key)
        if acct is None:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return acct

    def _authenticate(self, request: web.Request, raw_query: str, raw_body: str, params: dict) -> str:
        acct = self._key_account(request.headers.get("X-MBX-APIKEY"))
        query, sig_q = _split_signature(raw_query)
        body, sig_b = _split_signature(raw_body)
        signature = sig_b or sig_q
        if not signature:
            raise _missing("signature")
        expected = hmac.new(acct.secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        self._check_time(params)
        return acct.api_key

    # ---- formats ------------------------------------------------------------------------------------------
    def _symbol(self, params: dict, required: bool = True) -> str | None:
        venue = params.get("symbol")
        if not venue:
            if required:
                raise _missing("symbol")
            return None
        try:
            return self.by_venue[venue.upper()]
        except KeyError:
            raise BinanceError(-1121, "Invalid symbol.") from None

    def _symbol_info(self, spec: SymbolSpec) -> dict:
        notional = ({"filterType": "NOTIONAL", "minNotional": fmt(spec.min_notional), "applyMinToMarket": True,
                     "maxNotional": fmt(spec.max_notional), "applyMaxToMarket": False, "avgPriceMins": 5}
                    if self.notional_filter == "NOTIONAL" else
                    {"filterType": "MIN_NOTIONAL", "minNotional": fmt(spec.min_notional), "applyToMarket": True,
                     "avgPriceMins": 5})
        return {
            "symbol": venue_symbol(spec), "status": "TRADING",
            "baseAsset": spec.base, "baseAssetPrecision": 8, "quoteAsset": spec.quote, "quotePrecision": 8,
            "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False, "cancelReplaceAllowed": False, "amendAllowed": False,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt(spec.min_price), "maxPrice": fmt(spec.max_price),
                 "tickSize": fmt(spec.tick)},
                {"filterType": "LOT_SIZE", "minQty": fmt(spec.min_qty), "maxQty": fmt(spec.max_qty),
                 "stepSize": fmt(spec.step)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(spec.min_qty), "maxQty": fmt(spec.max_qty),
                 "stepSize": fmt(spec.step)},
                notional,
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _order_json(self, o: Order, resp_type: str = "RESULT", fills: list[Fill] | None = None,
                    for_query: bool = False) -> dict:
        spec = self.ex.specs[o.symbol]
        out = {"symbol": venue_symbol(spec), "orderId": o.order_id, "orderListId": -1,
               "clientOrderId": o.client_order_id}
        if not for_query:
            out["transactTime"] = o.created
        if resp_type == "ACK":
            return out
        out.update({
            "price": fmt(o.price or Decimal(0)), "origQty": fmt(o.qty), "executedQty": fmt(o.executed),
            "origQuoteOrderQty": fmt(o.quote_qty or Decimal(0)), "cummulativeQuoteQty": fmt(o.cum_quote),
            "status": o.status, "timeInForce": o.tif or "GTC", "type": o.type, "side": o.side,
            "workingTime": o.created, "selfTradePreventionMode": "EXPIRE_MAKER",
        })
        if for_query:
            out.update({"stopPrice": fmt(Decimal(0)), "icebergQty": fmt(Decimal(0)), "time": o.created,
                        "updateTime": o.updated, "isWorking": True})
        if resp_type == "FULL":
            out["fills"] = [{"price": fmt(f.price), "qty": fmt(f.qty), "commission": fmt(f.commission),
                             "commissionAsset": f.commission_asset, "tradeId": f.trade_id} for f in fills or []]
        return out

    def _trade_json(self, f: Fill) -> dict:
        return {"symbol": venue_symbol(self.ex.specs[f.symbol]), "id": f.trade_id, "orderId": f.order_id,
                "orderListId": -1, "price": fmt(f.price), "qty": fmt(f.qty), "quoteQty": fmt(f.quote_qty),
                "commission": fmt(f.commission), "commissionAsset": f.commission_asset, "time": f.time,
                "isBuyer": f.side == "BUY", "isMaker": f.is_maker, "isBestMatch": True}

    # ---- public endpoints ---------------------------------------------------------------------------------
    def _ping(self, params):
        return {}

    def _time(self, params):
        return {"serverTime": self.ex.server_ms()}

    def _exchange_info(self, params):
        specs = list(self.ex.specs.values())
        wanted = params.get("symbol")
        if params.get("symbols"):
            try:
                wanted = json.loads(params["symbols"])
            except ValueError:
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if wanted:
            wanted = [wanted] if isinstance(wanted, str) else wanted
            specs = [self.ex.specs[self._symbol({"symbol": w})] for w in wanted]
        return {"timezone": "UTC", "serverTime": self.ex.server_ms(),
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                "limit": 6000},
                               {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100}],
                "exchangeFilters": [], "symbols": [self._symbol_info(s) for s in specs]}

    def _tickers(self, params) -> list[tuple[str, Decimal]]:
        sym = self._symbol(params, required=False)
        return [(s, p) for s, p in self.ex.last.items() if sym is None or s == sym]

    def _ticker_price(self, params):
        rows = [{"symbol": venue_symbol(self.ex.specs[s]), "price": fmt(p)} for s, p in self._tickers(params)]
        return rows[0] if params.get("symbol") else rows

    def _book_ticker(self, params):
        rows = [{"symbol": venue_symbol(self.ex.specs[s]), "bidPrice": fmt(p), "bidQty": "1000.00000000",
                 "askPrice": fmt(p), "askQty": "1000.00000000"} for s, p in self._tickers(params)]
        return rows[0] if params.get("symbol") else rows

    def _ticker_24hr(self, params):
        now = self.ex.server_ms()
        rows = [{"symbol": venue_symbol(self.ex.specs[s]), "lastPrice": fmt(p), "bidPrice": fmt(p),
                 "askPrice": fmt(p), "openPrice": fmt(p), "highPrice": fmt(p), "lowPrice": fmt(p),
                 "volume": "0.00000000", "quoteVolume": "0.00000000", "priceChange": "0.00000000",
                 "priceChangePercent": "0.000", "openTime": now - 86400000, "closeTime": now, "count": 0}
                for s, p in self._tickers(params)]
        return rows[0] if params.get("symbol") else rows

    # ---- signed endpoints ---------------------------------------------------------------------------------
    def _new_order(self, account: str, params: dict):
        symbol = self._symbol(params)
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise _missing("side") if not side else BinanceError(-1100, "Illegal characters found in parameter 'side'.")
        type_ = params.get("type", "").upper()
        if not type_:
            raise _missing("type")
        if type_ not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise BinanceError(-1116, "Invalid orderType.")
        tif = params.get("timeInForce") or None
        qty, price, quote_qty = params.get("quantity"), params.get("price"), params.get("quoteOrderQty")
        if type_ == "LIMIT":
            if not tif:
                raise _missing("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(-1115, "Invalid timeInForce.")
            for name, value in (("quantity", qty), ("price", price)):
                if not value:
                    raise _missing(name)
        elif type_ == "LIMIT_MAKER":
            if tif:
                raise _not_required("timeInForce")
            for name, value in (("quantity", qty), ("price", price)):
                if not value:
                    raise _missing(name)
        else:
            if tif:
                raise _not_required("timeInForce")
            if price:
                raise _not_required("price")
            if not qty and not quote_qty:
                raise BinanceError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                                          "empty/null!")
            if qty and quote_qty:
                raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        cid = params.get("newClientOrderId") or None
        if cid is not None and not CLIENT_ID_RE.match(cid):
            raise BinanceError(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                      "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        resp_type = (params.get("newOrderRespType") or ("FULL" if type_ in ("MARKET", "LIMIT") else "ACK")).upper()
        try:
            order, fills = self.ex.place(account, symbol, side, type_, qty=qty or None, price=price or None,
                                         tif=tif, client_order_id=cid, quote_qty=quote_qty or None)
        except ValueError as exc:
            raise BinanceError(-1100, f"Illegal characters found in a parameter: {exc}") from None
        except VenueError as exc:
            raise self._order_refusal(exc, type_) from None
        return self._order_json(order, resp_type, fills)

    @staticmethod
    def _order_refusal(exc: VenueError, type_: str) -> BinanceError:
        return {
            "bad_symbol": BinanceError(-1121, "Invalid symbol."),
            "lot_size": BinanceError(-1013, "Filter failure: " + ("MARKET_LOT_SIZE" if type_ == "MARKET"
                                                                   else "LOT_SIZE")),
            "price_filter": BinanceError(-1013, "Filter failure: PRICE_FILTER"),
            "notional": BinanceError(-1013, "Filter failure: NOTIONAL"),
            "duplicate": BinanceError(-2010, "Duplicate order sent."),
            "insufficient": BinanceError(-2010, MSG_INSUFFICIENT),
            "would_take": BinanceError(-2010, "Order would immediately match and take."),
        }.get(exc.kind, BinanceError(-1013, f"Invalid order: {exc.kind}"))

    def _lookup(self, account: str, params: dict, cancel: bool) -> Order:
        symbol = self._symbol(params)
        oid, cid = params.get("orderId") or None, params.get("origClientOrderId") or None
        if oid is None and cid is None:
            raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                      "empty/null!")
        try:
            if cancel:
                return self.ex.cancel(account, symbol, oid, cid, cancel_client_id=params.get("newClientOrderId"))
            return self.ex.find(account, symbol, oid, cid)
        except VenueError:
            if cancel:
                raise BinanceError(-2011, "Unknown order sent.") from None
            raise BinanceError(-2013, "Order does not exist.") from None

    def _get_order(self, account: str, params: dict):
        return self._order_json(self._lookup(account, params, cancel=False), for_query=True)

    def _cancel_order(self, account: str, params: dict):
        order = self._lookup(account, params, cancel=True)
        out = self._order_json(order)
        out["origClientOrderId"] = order.client_order_id
        out["clientOrderId"] = order.cancel_client_id  # the cancel request's own id, as on Binance
        return out

    def _open_orders(self, account: str, params: dict):
        symbol = self._symbol(params, required=False)
        return [self._order_json(o, for_query=True) for o in self.ex.open_orders(account, symbol)]

    def _cancel_all(self, account: str, params: dict):
        symbol = self._symbol(params)
        out = []
        for o in self.ex.open_orders(account, symbol):
            o = self.ex.cancel(account, symbol, o.order_id)
            row = self._order_json(o)
            row["origClientOrderId"], row["clientOrderId"] = o.client_order_id, o.cancel_client_id
            out.append(row)
        if not out:
            raise BinanceError(-2011, "Unknown order sent.")
        return out

    def _my_trades(self, account: str, params: dict):
        symbol = self._symbol(params)
        try:
            limit = min(int(params.get("limit") or 500), 1000)
            order_id = int(params["orderId"]) if params.get("orderId") else None
            from_id = int(params["fromId"]) if params.get("fromId") else None
            start = int(params["startTime"]) if params.get("startTime") else None
            end = int(params["endTime"]) if params.get("endTime") else None
        except ValueError:
            raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
        if from_id is not None and (start is not None or end is not None):
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and end - start > 86400000:
            raise BinanceError(-1127, "More than 24 hours between startTime and endTime.")
        rows = self.ex.account_fills(account, symbol)
        if order_id is not None:
            rows = [f for f in rows if f.order_id == order_id]
        if from_id is not None:
            rows = [f for f in rows if f.trade_id >= from_id][:limit]
        elif start is not None:
            rows = [f for f in rows if f.time >= start and (end is None or f.time <= end)][:limit]
        else:
            rows = [f for f in rows if end is None or f.time <= end][-limit:]
        return [self._trade_json(f) for f in rows]

    def _account(self, account: str, params: dict):
        acct = self.ex.accounts[account]
        omit_zero = params.get("omitZeroBalances", "false").lower() == "true"
        with self.ex.lock:
            balances = [{"asset": a, "free": fmt(v[0]), "locked": fmt(v[1])} for a, v in acct.balances.items()
                        if not omit_zero or v[0] or v[1]]
        bps = int(self.ex.taker_fee * 10000)
        rate = fmt(self.ex.taker_fee)
        return {"makerCommission": int(self.ex.maker_fee * 10000), "takerCommission": bps, "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": fmt(self.ex.maker_fee), "taker": rate, "buyer": fmt(Decimal(0)),
                                    "seller": fmt(Decimal(0))},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.ex.server_ms(),
                "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 1}

    _public = {"GET ping": _ping, "GET time": _time, "GET exchangeInfo": _exchange_info,
               "GET ticker/price": _ticker_price, "GET ticker/bookTicker": _book_ticker,
               "GET ticker/24hr": _ticker_24hr}
    _private = {"POST order": _new_order, "GET order": _get_order, "DELETE order": _cancel_order,
                "GET openOrders": _open_orders, "DELETE openOrders": _cancel_all, "GET myTrades": _my_trades,
                "GET account": _account}

    # ---- WebSocket API: user data stream ------------------------------------------------------------------
    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = _Session(ws)
        self.sessions.append(session)
        writer = asyncio.ensure_future(self._ws_writer(session))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    reply = self._ws_request(session, data)
                except (ValueError, AttributeError):
                    reply = {"id": None, "status": 400, "error": {"code": -1000, "msg": "Malformed request."}}
                session.queue.put_nowait(("reply", reply))
        finally:
            self.sessions.remove(session)
            writer.cancel()
        return ws

    def _ws_request(self, session: _Session, data: dict) -> dict:
        rid, method, params = data.get("id"), data.get("method"), data.get("params") or {}
        ok = {"id": rid, "status": 200}
        if method == "ping":
            return {**ok, "result": {}}
        if method == "time":
            return {**ok, "result": {"serverTime": self.ex.server_ms()}}
        if method == "userDataStream.unsubscribe":
            session.account = None
            return {**ok, "result": {}}
        if method == "userDataStream.subscribe.signature":
            try:
                acct = self._key_account(params.get("apiKey"))
                signature = params.get("signature")
                if not signature:
                    raise _missing("signature")
                payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
                expected = hmac.new(acct.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, str(signature).lower()):
                    raise BinanceError(-1022, "Signature for this request is not valid.")
                self._check_time({k: str(v) for k, v in params.items()})
            except BinanceError as exc:
                return {"id": rid, "status": exc.status, "error": {"code": exc.code, "msg": exc.msg}}
            session.account = acct.api_key
            session.sub_id = next(self._sub_ids)
            return {**ok, "result": {"subscriptionId": session.sub_id}}
        return {"id": rid, "status": 400, "error": {"code": -1020, "msg": f"Unsupported operation {method}."}}

    async def _ws_writer(self, session: _Session) -> None:
        while True:
            kind, message = await session.queue.get()
            if kind == "event" and self.ex.active_fault(("ws_silent",), consume=False):
                continue  # silently dropped: the socket stays open and still answers pings
            if session.ws.closed:
                return
            try:
                await session.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):
                return

    def _on_event(self, event: str, account: str, payload: dict) -> None:
        """Called by the exchange (under its lock) for every change: build the user-data event now, deliver it
        on the server loop (call_soon_threadsafe keeps the order of events from any thread)."""
        now = self.ex.server_ms()
        if event == "order":
            body = self._execution_report(payload["order"], payload["exec_type"], payload.get("fill"), now,
                                          payload.get("cancel_client_id"))
        else:
            acct = self.ex.accounts[account]
            body = {"e": "outboundAccountPosition", "E": now, "u": now,
                    "B": [{"a": a, "f": fmt(acct.bal(a)[0]), "l": fmt(acct.bal(a)[1])} for a in payload["assets"]]}
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def deliver():
            for s in self.sessions:
                if s.account == account:
                    s.queue.put_nowait(("event", {"subscriptionId": s.sub_id, "event": body}))
        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # loop closed meanwhile
            pass

    def _execution_report(self, o: Order, exec_type: str, fill: Fill | None, now: int,
                          cancel_cid: str | None) -> dict:
        spec = self.ex.specs[o.symbol]
        canceled = exec_type == "CANCELED"
        return {
            "e": "executionReport", "E": now, "s": venue_symbol(spec),
            "c": (cancel_cid or o.client_order_id) if canceled else o.client_order_id,
            "S": o.side, "o": o.type, "f": o.tif or "GTC", "q": fmt(o.qty), "p": fmt(o.price or Decimal(0)),
            "P": fmt(Decimal(0)), "F": fmt(Decimal(0)), "g": -1, "C": o.client_order_id if canceled else "",
            "x": exec_type, "X": o.status, "r": "NONE", "i": o.order_id,
            "l": fmt(fill.qty if fill else Decimal(0)), "z": fmt(o.executed),
            "L": fmt(fill.price if fill else Decimal(0)), "n": fmt(fill.commission if fill else Decimal(0)),
            "N": fill.commission_asset if fill else None, "T": o.updated, "t": fill.trade_id if fill else -1,
            "v": 0, "I": 0, "w": o.is_open and o.resting, "m": bool(fill and fill.is_maker), "M": bool(fill),
            "O": o.created, "Z": fmt(o.cum_quote), "Y": fmt(fill.quote_qty if fill else Decimal(0)),
            "Q": fmt(o.quote_qty or Decimal(0)), "W": o.created, "V": "EXPIRE_MAKER",
        }


def _truthy(value: Any) -> bool:
    return value not in (False, 0, "0", "false", "False", "no", None)


def binance_client(base_url: str, api_key: str, secret: str, pro: bool = False, **config):
    """A real ccxt Binance client (ccxt.async_support, or ccxt.pro with ``pro=True``) pointed at ``base_url``.

    ``config`` is merged into the constructor's config (e.g. timeout=1000); rateLimit defaults to 1 ms so
    tests are not slowed by ccxt's limiter (which stays enabled)."""
    if pro:
        import ccxt.pro as module
    else:
        import ccxt.async_support as module
    base = base_url.rstrip("/")
    ws_base = "ws" + base[len("http"):]
    options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
               "fetchOpenOrders": {"warnWithoutSymbol": False}}
    options.update(config.pop("options", {}))
    ex = getattr(module, "binance")({"apiKey": api_key, "secret": secret, "rateLimit": 1, "options": options,
                                     **config})
    api = ex.urls["api"]
    for key, value in list(api.items()):
        if isinstance(value, str):
            api[key] = f"http://{DEAD}/{key}"
    api["public"] = api["private"] = f"{base}/api/v3"
    api["sapi"] = f"{base}/sapi/v1"
    if isinstance(api.get("ws"), dict):
        ws = api["ws"]
        for key, value in list(ws.items()):
            if isinstance(value, str):
                ws[key] = f"ws://{DEAD}/{key}"
            elif isinstance(value, dict):
                for sub in value:
                    value[sub] = f"ws://{DEAD}/{key}/{sub}"
        ws["ws-api"]["spot"] = f"{ws_base}/ws-api/v3"
    return ex


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Binance spot exchange on 127.0.0.1 (tests only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", default=None)
    parser.add_argument("--api-key", default=DEFAULT_KEY)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    args = parser.parse_args(argv)
    FakeBinance(api_key=args.api_key, secret=args.secret, state_file=args.state_file).serve_forever(args.port)


if __name__ == "__main__":
    main()
