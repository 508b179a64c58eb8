"""A fake Coinbase Advanced Trade exchange on 127.0.0.1: the REST subset and the "user" WebSocket channel that
ccxt 4.5.90 (ccxt.async_support.coinbase / ccxt.pro.coinbase) calls, so the real ccxt code signs (ES256 JWT),
sends and parses.  The matching engine, balances and fault script are tests/fakes/core.py's (see there).

    fake = FakeCoinbase()      # one account with a fresh EC P-256 "cloud" key: fake.api_key, fake.secret
    url = fake.start()
    ex = coinbase_client(url, fake.api_key, fake.secret, pro=True)

or ``python -m tests.fakes.coinbase --port P --state-file F --key-file K`` (K: JSON {"api_key","secret"} written
on first start and reused, so a restarted fake accepts the same key); control through ``Control(url)``.

URL keys overridden by ``coinbase_client`` (the adapter's ``venue_api_url`` must do the same):
  urls['api']['rest']  -> <base>                 (ccxt appends /api/v3/... and /v2/...)
  urls['api']['ws']    -> ws://<host:port>/ws    (ccxt.pro: the "user" channel, watch_orders only)
  options['fetchBalance'] = 'v3PrivateGetBrokerageAccounts' (available + hold; the v2 default /v2/accounts is
  served too but has no "used").  Markets: /api/v3/brokerage/market/products; ccxt's fetch_currencies calls
  /v2/currencies, /v2/currencies/crypto and /v2/exchange-rates, which are served (minimal).

Auth: ``Authorization: Bearer <JWT>``, ES256 over the account's EC P-256 key, verified with `cryptography`:
kid/sub = the key name, iss "coinbase-cloud", aud ["retail_rest_api_proxy"], nbf <= now + 5 s < exp (the
server clock, shifted by the clock_skew fault), and for REST uri == "<METHOD> <host><path>" (scheme stripped,
no query).  Failures: HTTP 401 {"error":"unauthorized",...} -> ccxt AuthenticationError.

Coinbase behaviours reproduced: order ids are UUIDs; a repeated client_order_id does NOT create an order, the
original order is returned (success true, the same order_id) -- Coinbase's documented idempotency; create
failures are HTTP 200 {"success":false,"error_response":{error, message, preview_failure_reason}}
(PREVIEW_INSUFFICIENT_FUND -> InsufficientFunds; others -> ExchangeError, as ccxt maps them); an unknown order
id -> 404 {"error":"NOT_FOUND","message":"order with this orderID was not found"} -> ExchangeError (ccxt's
broad pattern never matches); cancel of an unknown/closed order -> {"success":false} -> BadRequest; a killed
IOC/FOK/market remainder reports status EXPIRED (ccxt: canceled).  The ws "user" channel sends a
"subscriptions" ack, a "snapshot" of open orders, then "update" events with sequence_num counting up per
connection (also for events dropped by ws_silent, so a gap shows).

Faults (``fake.fault(kind, count=1, duration=None, **params)``; ``route`` is a regex over "<METHOD> <path
after /api/v3/brokerage/ or /v2/>", e.g. "POST orders"): http_5xx (status=503, accept=True, default route
"POST orders"), timeout (seconds=3, accept=True, default route "POST orders"), rate_limit (429
{"error":"rate_limit_exceeded"} -> RateLimitExceeded), maintenance (every request 503 plain -> 
ExchangeNotAvailable), clock_skew (offset_ms; an offset past the JWT's 120 s life -> 401 AuthenticationError;
ccxt's coinbase signs with its local clock, so load_time_difference does not help), insufficient_balance,
partial_fill (fraction, rest), ws_silent.  ``fake.drop_ws()`` closes every user socket.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.fakes.core import Exchange, FakeServer, Fill, Order, SymbolSpec, VenueError, default_specs

DEFAULT_BALANCES = {"USD": "100000", "BTC": "1", "ETH": "10", "SOL": "100"}
DEAD = "127.0.0.1:9"
JWT_LEEWAY_S = 5

TIF = {"GTC": "GOOD_UNTIL_CANCELLED", "IOC": "IMMEDIATE_OR_CANCEL", "FOK": "FILL_OR_KILL"}
STATUS = {"NEW": "OPEN", "PARTIALLY_FILLED": "OPEN", "FILLED": "FILLED", "CANCELED": "CANCELLED",
          "EXPIRED": "EXPIRED"}


def make_cloud_key(name: str = "organizations/fake-org/apiKeys/fake-key") -> tuple[str, str]:
    """A Coinbase "cloud" API key: (key name, PEM of a fresh EC P-256 private key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    return name, pem


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def order_uuid(order_id: int) -> str:
    return str(uuid.UUID(int=order_id))


def trade_uuid(trade_id: int) -> str:
    return str(uuid.UUID(int=(1 << 64) + trade_id))


def num(value: Decimal) -> str:
    """A Decimal as Coinbase writes it: plain notation, no trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class CoinbaseError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(json.dumps(body))
        self.status, self.body = status, body


def _unauthorized(detail: str) -> CoinbaseError:
    return CoinbaseError(401, {"error": "unauthorized", "error_details": detail, "message": "Unauthorized"})


def _bad_argument(detail: str) -> CoinbaseError:
    return CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": detail, "message": detail})


def spec_product(spec: SymbolSpec) -> str:
    return f"{spec.base}-{spec.quote}"


class _Session:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self.account: str | None = None
        self.products: set[str] = set()
        self.seq = 0


class FakeCoinbase(FakeServer):
    def __init__(self, specs: list[SymbolSpec] | None = None, api_key: str | None = None, secret: str | None = None,
                 balances: dict[str, Any] | None = None, state_file: str | None = None,
                 taker_fee: str = "0.001", maker_fee: str = "0.001"):
        if api_key is None or secret is None:
            api_key, secret = make_cloud_key()
        self.api_key, self.secret = api_key, secret
        ex = Exchange(specs or default_specs("USD"), taker_fee=taker_fee, maker_fee=maker_fee)
        ex.add_account(api_key, secret, DEFAULT_BALANCES if balances is None else balances)
        super().__init__(ex, state_file)
        self.by_product = {spec_product(s): s.symbol for s in ex.specs.values()}
        self.sessions: list[_Session] = []
        self._public_keys: dict[str, Any] = {}
        self.ws_errors: list[str] = []  # error messages sent on the user channel, for assertions
        ex.listeners.append(self._on_event)

    def books(self) -> dict:
        books = super().books()
        for row in books["orders"].values():
            row["venue_order_id"] = order_uuid(row["order_id"])
        return books

    # ---- routes -----------------------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/api/v3/brokerage/{endpoint:.*}", self._rest)
        app.router.add_route("*", "/v2/{endpoint:.*}", self._rest)

    async def on_shutdown(self) -> None:
        for s in list(self.sessions):
            await s.ws.close()

    async def _rest(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"].strip("/")
        v2 = request.path.startswith("/v2/")
        method = request.method
        route = f"{method} {endpoint}"
        ex = self.ex
        ex.requests.append((method, ("v2/" if v2 else "") + endpoint))
        raw_body = await request.text() if request.can_read_body else ""

        if ex.active_fault(("maintenance",), route):
            return web.Response(status=503, text="Service Unavailable: maintenance")
        limited = ex.active_fault(("rate_limit",), route)
        if limited:
            return web.json_response({"error": "rate_limit_exceeded", "error_details": "Too many requests",
                                      "message": "Too many requests"}, status=429,
                                     headers={"Retry-After": str(int(limited.params.get("retry_after", 1)))})
        timeout = ex.active_fault(("timeout",), route, default_route="POST orders")
        server_error = ex.active_fault(("http_5xx",), route, default_route="POST orders")
        for fault in (timeout, server_error):
            if fault and fault.params.get("accept", True) in (False, 0, "0", "false"):
                if fault is timeout:
                    await asyncio.sleep(float(fault.params.get("seconds", 3)))
                return web.Response(status=int(fault.params.get("status", 503)), text="Service Unavailable")
        try:
            params: dict[str, Any] = {}
            for key, value in request.query.items():
                params.setdefault(key, []).append(value)
            params = {k: v[0] if len(v) == 1 else v for k, v in params.items()}
            body = json.loads(raw_body) if raw_body else {}
            with ex.lock:  # one consistent view against the test thread's trade()/set_balance()
                result = self._dispatch(request, v2, method, endpoint, params, body)
            response = web.json_response(result)
        except CoinbaseError as exc:
            response = web.json_response(exc.body, status=exc.status)
        except ValueError as exc:
            response = web.json_response({"error": "INVALID_ARGUMENT", "error_details": str(exc),
                                          "message": str(exc)}, status=400)
        finally:
            if method != "GET":
                self.save()
        # the request was processed (accepted or refused); the client gets its answer late, or a 5xx instead
        if timeout:
            await asyncio.sleep(float(timeout.params.get("seconds", 3)))
        if server_error:
            return web.Response(status=int(server_error.params.get("status", 503)), text="Service Unavailable")
        return response

    def _dispatch(self, request, v2, method, endpoint, params, body):
        if v2:
            public = {"GET time": self._v2_time, "GET currencies": self._v2_currencies,
                      "GET currencies/crypto": self._v2_crypto, "GET exchange-rates": self._v2_rates}
            handler = public.get(f"{method} {endpoint}")
            if handler:
                return handler(params)
            if f"{method} {endpoint}" == "GET accounts":
                return self._v2_accounts(self._authenticate(request))
            raise CoinbaseError(404, {"errors": [{"id": "not_found", "message": "Not found"}]})
        public = {"GET market/products": self._products, "GET time": self._time}
        handler = public.get(f"{method} {endpoint}")
        if handler:
            return handler(params)
        account = self._authenticate(request)
        private = {"GET products": self._products, "GET transaction_summary": self._fee_summary,
                   "POST orders": self._create, "POST orders/batch_cancel": self._cancel,
                   "GET orders/historical/batch": self._list_orders, "GET orders/historical/fills": self._fills,
                   "GET accounts": self._accounts}
        handler = private.get(f"{method} {endpoint}")
        if handler:
            return handler(account, params, body)
        m = re.fullmatch(r"orders/historical/([0-9a-f-]+)", endpoint)
        if method == "GET" and m:
            return self._get_order(account, m.group(1))
        raise CoinbaseError(404, {"error": "NOT_FOUND", "error_details": f"no route {method} {endpoint}",
                                  "message": "Not found"})

    # ---- auth -------------------------------------------------------------------------------------------------
    def _public_key(self, api_key: str):
        acct = self.ex.accounts.get(api_key)
        if acct is None:
            raise _unauthorized("unknown api key")
        key = self._public_keys.get(api_key)
        if key is None:
            key = serialization.load_pem_private_key(acct.secret.encode(), None).public_key()
            self._public_keys[api_key] = key
        return key

    def verify_jwt(self, token: str, uri: str | None) -> str:
        """Check an ES256 JWT as Coinbase does; returns the account's key name."""
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(_b64url(head_b64))
            claims = json.loads(_b64url(claims_b64))
            sig = _b64url(sig_b64)
        except (ValueError, TypeError):
            raise _unauthorized("malformed jwt") from None
        if header.get("alg") != "ES256" or len(sig) != 64:
            raise _unauthorized("jwt must be ES256")
        kid = header.get("kid")
        if not kid or claims.get("sub") != kid:
            raise _unauthorized("jwt kid/sub mismatch")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self._public_key(kid).verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _unauthorized("bad jwt signature") from None
        if claims.get("iss") != "coinbase-cloud" or "retail_rest_api_proxy" not in (claims.get("aud") or []):
            raise _unauthorized("bad jwt issuer/audience")
        now = self.ex.server_ms() / 1000
        try:
            nbf, exp = float(claims["nbf"]), float(claims["exp"])
        except (KeyError, TypeError, ValueError):
            raise _unauthorized("jwt without nbf/exp") from None
        if nbf > now + JWT_LEEWAY_S or exp <= now:
            raise _unauthorized("jwt expired or not yet valid")
        if uri is not None:
            claimed = re.sub(r"^(\S+) https?://", r"\1 ", str(claims.get("uri", "")))
            if claimed != uri:
                raise _unauthorized(f"jwt uri {claimed!r} is not {uri!r}")
        return kid

    def _authenticate(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise _unauthorized("no bearer token")
        return self.verify_jwt(auth[len("Bearer "):], f"{request.method} {request.host}{request.path}")

    # ---- formats ----------------------------------------------------------------------------------------------
    def _symbol(self, product_id: str | None) -> str:
        try:
            return self.by_product[product_id]
        except KeyError:
            raise _bad_argument(f"invalid product_id {product_id!r}") from None

    def _product(self, spec: SymbolSpec) -> dict:
        pid = spec_product(spec)
        price = self.ex.last[spec.symbol]
        return {
            "product_id": pid, "price": num(price), "price_percentage_change_24h": "0", "volume_24h": "0",
            "volume_percentage_change_24h": "0", "base_increment": num(spec.step), "quote_increment": num(spec.tick),
            "quote_min_size": num(spec.min_notional), "quote_max_size": num(spec.max_notional),
            "base_min_size": num(spec.min_qty), "base_max_size": num(spec.max_qty),
            "base_name": spec.base, "quote_name": spec.quote, "watched": False, "is_disabled": False, "new": False,
            "status": "online", "cancel_only": False, "limit_only": False, "post_only": False,
            "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
            "quote_currency_id": spec.quote, "base_currency_id": spec.base, "fcm_trading_session_details": None,
            "mid_market_price": "", "alias": "", "alias_to": [], "base_display_symbol": spec.base,
            "quote_display_symbol": spec.quote, "view_only": False, "price_increment": num(spec.tick),
            "display_name": pid, "product_venue": "CBE",
        }

    def _config(self, o: Order) -> dict:
        return o.meta.get("order_configuration") or {}

    def _order_json(self, o: Order) -> dict:
        spec = self.ex.specs[o.symbol]
        avg = (o.cum_quote / o.executed) if o.executed else Decimal(0)
        hold = o.locked
        return {
            "order_id": order_uuid(o.order_id), "product_id": spec_product(spec), "user_id": "fake-user",
            "order_configuration": self._config(o), "side": o.side, "client_order_id": o.client_order_id,
            "status": STATUS[o.status], "time_in_force": TIF.get(o.tif or "GTC", "GOOD_UNTIL_CANCELLED"),
            "created_time": iso(o.created),
            "completion_percentage": str((o.executed / o.qty * 100).quantize(Decimal("0.01"))) if o.qty else "0",
            "filled_size": num(o.executed), "average_filled_price": num(avg), "fee": "",
            "number_of_fills": str(len([f for f in self.ex.fills if f.order_id == o.order_id])),
            "filled_value": num(o.cum_quote), "pending_cancel": False, "size_in_quote": False,
            "total_fees": num(o.fees), "size_inclusive_of_fees": False,
            "total_value_after_fees": num(o.cum_quote + o.fees if o.side == "BUY" else o.cum_quote - o.fees),
            "trigger_status": "INVALID_ORDER_TYPE", "order_type": "MARKET" if o.type == "MARKET" else "LIMIT",
            "reject_reason": "REJECT_REASON_UNSPECIFIED", "settled": not o.is_open, "product_type": "SPOT",
            "reject_message": "", "cancel_message": "User requested cancel" if o.status == "CANCELED" else "",
            "order_placement_source": "RETAIL_ADVANCED", "outstanding_hold_amount": num(hold),
            "is_liquidation": False, "last_fill_time": iso(o.updated) if o.executed else None,
            "edit_history": [], "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE", "retail_portfolio_id": "",
        }

    def _fill_json(self, f: Fill) -> dict:
        spec = self.ex.specs[f.symbol]
        return {"entry_id": trade_uuid(f.trade_id), "trade_id": trade_uuid(f.trade_id),
                "order_id": order_uuid(f.order_id), "trade_time": iso(f.time), "trade_type": "FILL",
                "price": num(f.price), "size": num(f.qty), "commission": num(f.commission),
                "product_id": spec_product(spec), "sequence_timestamp": iso(f.time),
                "liquidity_indicator": "MAKER" if f.is_maker else "TAKER", "size_in_quote": False,
                "user_id": "fake-user", "side": f.side, "retail_portfolio_id": ""}

    # ---- public -----------------------------------------------------------------------------------------------
    def _products(self, *args):
        params = args[-2] if len(args) == 3 else args[0]
        if params.get("product_type") and params["product_type"] != "SPOT":
            return {"products": [], "num_products": 0}
        products = [self._product(s) for s in self.ex.specs.values()]
        return {"products": products, "num_products": len(products)}

    def _time(self, params):
        ms = self.ex.server_ms()
        return {"iso": iso(ms), "epochSeconds": str(ms // 1000), "epochMillis": str(ms)}

    def _v2_time(self, params):
        ms = self.ex.server_ms()
        return {"data": {"iso": iso(ms)[:-5] + "Z", "epoch": ms // 1000}}

    def _assets(self) -> list[str]:
        seen: list[str] = []
        for s in self.ex.specs.values():
            for a in (s.base, s.quote):
                if a not in seen:
                    seen.append(a)
        return seen

    def _v2_currencies(self, params):
        quotes = {s.quote for s in self.ex.specs.values()}
        return {"data": [{"id": q, "name": q, "min_size": "0.01"} for q in sorted(quotes)]}

    def _v2_crypto(self, params):
        quotes = {s.quote for s in self.ex.specs.values()}
        return {"data": [{"asset_id": a, "code": a, "name": a, "color": "#000000", "sort_index": i,
                          "exponent": 8, "type": "crypto", "address_regex": ".*"}
                         for i, a in enumerate(a for a in self._assets() if a not in quotes)]}

    def _v2_rates(self, params):
        base = params.get("currency", "USD")
        rates = {}
        for s in self.ex.specs.values():
            if s.quote == base:
                rates[s.base] = num(Decimal(1) / self.ex.last[s.symbol])
        rates[base] = "1"
        return {"data": {"currency": base, "rates": rates}}

    # ---- private ----------------------------------------------------------------------------------------------
    def _fee_summary(self, account, params, body):
        return {"total_volume": 0, "total_fees": 0,
                "fee_tier": {"pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "10000",
                             "taker_fee_rate": num(self.ex.taker_fee), "maker_fee_rate": num(self.ex.maker_fee),
                             "aop_from": "", "aop_to": ""},
                "margin_rate": None, "goods_and_services_tax": None, "advanced_trade_only_volume": 0,
                "advanced_trade_only_fees": 0, "coinbase_pro_volume": 0, "coinbase_pro_fees": 0,
                "total_balance": "", "has_promo_fee": False}

    def _failure(self, error: str, message: str, preview: str, config: dict) -> dict:
        return {"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
                "error_response": {"error": error, "message": message, "error_details": "",
                                   "preview_failure_reason": preview, "new_order_failure_reason": error},
                "order_configuration": config}

    def _create(self, account, params, body):
        cid = body.get("client_order_id")
        if not cid or not isinstance(cid, str):
            raise _bad_argument("client_order_id is required")
        symbol = self._symbol(body.get("product_id"))
        side = str(body.get("side", "")).upper()
        if side not in ("BUY", "SELL"):
            raise _bad_argument("side must be BUY or SELL")
        config = body.get("order_configuration") or {}
        if len(config) != 1:
            raise _bad_argument("exactly one order_configuration is required")
        (kind, conf), = config.items()
        existing = self.ex.by_client.get((account, cid))
        if existing is not None:  # Coinbase: a repeated client_order_id returns the original order
            o = self.ex.orders[existing]
            return {"success": True, "success_response": {"order_id": order_uuid(o.order_id),
                    "product_id": body.get("product_id"), "side": o.side, "client_order_id": cid},
                    "order_configuration": self._config(o)}
        price = qty = quote = tif = None
        if kind == "market_market_ioc":
            type_ = "MARKET"
            qty, quote = conf.get("base_size"), conf.get("quote_size")
            if bool(qty) == bool(quote):
                raise _bad_argument("market_market_ioc needs exactly one of base_size, quote_size")
        elif kind in ("limit_limit_gtc", "sor_limit_ioc", "limit_limit_fok"):
            qty, price = conf.get("base_size"), conf.get("limit_price")
            if not qty or not price:
                raise _bad_argument(f"{kind} needs base_size and limit_price")
            tif = {"limit_limit_gtc": "GTC", "sor_limit_ioc": "IOC", "limit_limit_fok": "FOK"}[kind]
            type_ = "LIMIT_MAKER" if (kind == "limit_limit_gtc" and conf.get("post_only")) else "LIMIT"
            if type_ == "LIMIT_MAKER":
                tif = None
        else:
            return self._failure("UNSUPPORTED_ORDER_CONFIGURATION", f"{kind} is not supported by the fake",
                                 "UNSUPPORTED_ORDER_CONFIGURATION", config)
        try:
            order, _fills = self.ex.place(account, symbol, side, type_, qty=qty, price=price, tif=tif,
                                          client_order_id=cid, quote_qty=quote, meta={"order_configuration": config})
        except VenueError as exc:
            error, message, preview = {
                "insufficient": ("INSUFFICIENT_FUND", "Insufficient balance in source account",
                                 "PREVIEW_INSUFFICIENT_FUND"),
                "lot_size": ("INVALID_SIZE_PRECISION", "Invalid order size", "PREVIEW_INVALID_SIZE_PRECISION"),
                "price_filter": ("INVALID_PRICE_PRECISION", "Invalid limit price",
                                 "PREVIEW_INVALID_PRICE_PRECISION"),
                "notional": ("UNKNOWN_FAILURE_REASON", "Order size too small",
                             "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"),
                "would_take": ("INVALID_LIMIT_PRICE_POST_ONLY", "Post-only order would cross",
                               "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY"),
            }.get(exc.kind, ("UNKNOWN_FAILURE_REASON", exc.kind, "UNKNOWN_PREVIEW_FAILURE_REASON"))
            return self._failure(error, message, preview, config)
        return {"success": True, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": order_uuid(order.order_id),
                "success_response": {"order_id": order_uuid(order.order_id), "product_id": body["product_id"],
                                     "side": side, "client_order_id": cid},
                "order_configuration": config}

    def _order_by_uuid(self, account: str, oid: str) -> Order | None:
        try:
            num = uuid.UUID(oid).int
        except ValueError:
            return None
        o = self.ex.orders.get(num)
        return o if o is not None and o.account == account else None

    def _get_order(self, account, oid):
        o = self._order_by_uuid(account, oid)
        if o is None:
            raise CoinbaseError(404, {"error": "NOT_FOUND", "error_details": "order with this orderID was not found",
                                      "message": "order with this orderID was not found"})
        return {"order": self._order_json(o)}

    def _cancel(self, account, params, body):
        results = []
        for oid in body.get("order_ids") or []:
            o = self._order_by_uuid(account, str(oid))
            try:
                if o is None:
                    raise VenueError("unknown_order")
                self.ex.cancel(account, None, o.order_id)
                results.append({"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": oid})
            except VenueError:
                results.append({"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": oid})
        return {"results": results}

    def _list_orders(self, account, params, body):
        statuses = params.get("order_status") or []
        statuses = [statuses] if isinstance(statuses, str) else statuses
        products = params.get("product_ids") or params.get("product_id") or []
        products = [products] if isinstance(products, str) else products
        symbols = {self._symbol(p) for p in products}
        start = parse_iso(params["start_date"]) if params.get("start_date") else None
        end = parse_iso(params["end_date"]) if params.get("end_date") else None
        limit = int(params.get("limit") or 100)
        with self.ex.lock:
            rows = [o for o in self.ex.orders.values() if o.account == account
                    and (not symbols or o.symbol in symbols)
                    and (not statuses or STATUS[o.status] in statuses)
                    and (start is None or o.created >= start) and (end is None or o.created <= end)]
            rows.sort(key=lambda o: o.order_id, reverse=True)  # newest first, as Coinbase
            out = [self._order_json(o) for o in rows[:limit]]
        return {"orders": out, "sequence": "0", "has_next": False, "cursor": ""}

    def _fills(self, account, params, body):
        products = params.get("product_ids") or params.get("product_id") or []
        products = [products] if isinstance(products, str) else products
        symbols = {self._symbol(p) for p in products}
        order_ids = params.get("order_ids") or params.get("order_id") or []
        order_ids = {order_ids} if isinstance(order_ids, str) else set(order_ids)
        start = parse_iso(params["start_sequence_timestamp"]) if params.get("start_sequence_timestamp") else None
        end = parse_iso(params["end_sequence_timestamp"]) if params.get("end_sequence_timestamp") else None
        limit = int(params.get("limit") or 100)
        rows = [f for f in self.ex.account_fills(account) if (not symbols or f.symbol in symbols)
                and (not order_ids or order_uuid(f.order_id) in order_ids)
                and (start is None or f.time >= start) and (end is None or f.time <= end)]
        rows.sort(key=lambda f: f.trade_id, reverse=True)
        return {"fills": [self._fill_json(f) for f in rows[:limit]], "cursor": ""}

    def _accounts(self, account, params, body):
        acct = self.ex.accounts[account]
        with self.ex.lock:
            rows = [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account}/{a}")), "name": f"{a} Wallet",
                     "currency": a, "available_balance": {"value": num(v[0]), "currency": a}, "default": True,
                     "active": True, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                     "deleted_at": None,
                     "type": "ACCOUNT_TYPE_FIAT" if a in ("USD", "EUR", "GBP") else "ACCOUNT_TYPE_CRYPTO",
                     "ready": True, "hold": {"value": num(v[1]), "currency": a}, "retail_portfolio_id": ""}
                    for a, v in acct.balances.items()]
        return {"accounts": rows, "has_next": False, "cursor": "", "size": len(rows)}

    def _v2_accounts(self, account):
        acct = self.ex.accounts[account]
        with self.ex.lock:
            rows = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account}/{a}")), "name": f"{a} Wallet",
                     "primary": True, "type": "fiat" if a in ("USD", "EUR", "GBP") else "wallet",
                     "currency": {"code": a, "name": a},
                     "balance": {"amount": num(v[0] + v[1]), "currency": a},
                     "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                     "resource": "account", "resource_path": f"/v2/accounts/{a}"}
                    for a, v in acct.balances.items()]
        return {"pagination": {"ending_before": None, "starting_after": None, "limit": 250, "order": "desc",
                               "previous_uri": None, "next_uri": None, "next_starting_after": None},
                "data": rows}

    # ---- WebSocket: the "user" channel -------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
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
                    self._ws_request(session, data)
                except (ValueError, AttributeError, KeyError) as exc:
                    self._ws_error(session, f"failure to subscribe: {exc}")
                except CoinbaseError:
                    self._ws_error(session, "authentication failure")
        finally:
            self.sessions.remove(session)
            writer.cancel()
        return ws

    def _ws_error(self, session: _Session, message: str) -> None:
        self.ws_errors.append(message)
        session.queue.put_nowait(("reply", {"type": "error", "message": message}))

    def _ws_request(self, session: _Session, data: dict) -> None:
        channel = data.get("channel")
        products = [str(p) for p in data.get("product_ids") or []]
        for p in products:
            self._symbol(p)
        if data.get("type") == "unsubscribe":
            session.queue.put_nowait(("reply", self._envelope(session, "subscriptions", [{"subscriptions": {}}])))
            return
        if data.get("type") != "subscribe":
            raise ValueError("type must be subscribe or unsubscribe")
        if channel == "heartbeats":
            session.queue.put_nowait(("reply", self._envelope(session, "subscriptions",
                                                              [{"subscriptions": {"heartbeats": ["heartbeats"]}}])))
            return
        if channel != "user":
            raise ValueError(f"channel {channel!r} is not served by the fake")
        jwt = data.get("jwt")
        if not jwt:
            raise CoinbaseError(401, {})
        account = self.verify_jwt(jwt, None)
        with self.ex.lock:
            session.account = account
            session.products |= set(products)
            open_orders = [self._ws_order(o) for o in self.ex.open_orders(account)
                           if self._wanted(session, o.symbol)]
            session.queue.put_nowait(("reply", self._envelope(session, "subscriptions",
                                                              [{"subscriptions": {"user": products}}])))
            session.queue.put_nowait(("reply", self._envelope(session, "user",
                                                              [{"type": "snapshot", "orders": open_orders}])))

    def _wanted(self, session: _Session, symbol: str) -> bool:
        return not session.products or spec_product(self.ex.specs[symbol]) in session.products

    def _envelope(self, session: _Session, channel: str, events: list) -> dict:
        msg = {"channel": channel, "client_id": "", "timestamp": iso(self.ex.server_ms()),
               "sequence_num": session.seq, "events": events}
        session.seq += 1
        return msg

    def _ws_order(self, o: Order) -> dict:
        spec = self.ex.specs[o.symbol]
        avg = (o.cum_quote / o.executed) if o.executed else Decimal(0)
        return {"order_id": order_uuid(o.order_id), "client_order_id": o.client_order_id,
                "cumulative_quantity": num(o.executed),
                "leaves_quantity": num(o.remaining if o.is_open else Decimal(0)),
                "avg_price": num(avg), "total_fees": num(o.fees), "status": STATUS[o.status],
                "product_id": spec_product(spec), "creation_time": iso(o.created), "order_side": o.side,
                "order_type": "Market" if o.type == "MARKET" else "Limit",
                "limit_price": num(o.price) if o.price is not None else "", "filled_value": num(o.cum_quote),
                "number_of_fills": str(len([f for f in self.ex.fills if f.order_id == o.order_id])),
                "outstanding_hold_amount": num(o.locked),
                "time_in_force": TIF.get(o.tif or "GTC", "GOOD_UNTIL_CANCELLED"),
                "completion_percentage": str((o.executed / o.qty * 100).quantize(Decimal("0.01"))),
                "cancel_reason": "User requested cancel" if o.status == "CANCELED" else "",
                "reject_reason": "", "post_only": o.type == "LIMIT_MAKER"}

    async def _ws_writer(self, session: _Session) -> None:
        while True:
            kind, message = await session.queue.get()
            if kind == "event":
                if not self._wanted(session, message["symbol"]):
                    continue
                message = self._envelope(session, "user", [{"type": "update", "orders": [message["order"]]}])
                if self.ex.active_fault(("ws_silent",), consume=False):
                    continue  # dropped; sequence_num still advanced, so a gap shows later
            if session.ws.closed:
                return
            try:
                await session.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):
                return

    def _on_event(self, event: str, account: str, payload: dict) -> None:
        if event != "order":  # Coinbase's user channel carries orders only
            return
        order = payload["order"]
        body = {"symbol": order.symbol, "order": self._ws_order(order)}
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def deliver():
            for s in self.sessions:
                if s.account == account:
                    s.queue.put_nowait(("event", body))
        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            pass


def coinbase_client(base_url: str, api_key: str, secret: str, pro: bool = False, **config):
    """A real ccxt Coinbase client (ccxt.async_support, or ccxt.pro with ``pro=True``) pointed at ``base_url``.
    ``config`` is merged into the constructor's config; rateLimit defaults to 1 ms (the limiter stays on)."""
    if pro:
        import ccxt.pro as module
    else:
        import ccxt.async_support as module
    base = base_url.rstrip("/")
    options = {"fetchBalance": "v3PrivateGetBrokerageAccounts"}
    options.update(config.pop("options", {}))
    ex = getattr(module, "coinbase")({"apiKey": api_key, "secret": secret, "rateLimit": 1, "options": options,
                                      **config})
    api = ex.urls["api"]
    for key, value in list(api.items()):
        if isinstance(value, str):
            api[key] = f"http://{DEAD}/{key}"
    api["rest"] = base
    if pro:
        api["ws"] = "ws" + base[len("http"):] + "/ws"
    return ex


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Coinbase Advanced Trade exchange on 127.0.0.1 (tests only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", default=None)
    parser.add_argument("--key-file", default=None, help="JSON {api_key, secret}; created with a fresh key if absent")
    args = parser.parse_args(argv)
    api_key = secret = None
    if args.key_file:
        if os.path.exists(args.key_file):
            with open(args.key_file) as fh:
                key = json.load(fh)
            api_key, secret = key["api_key"], key["secret"]
        else:
            api_key, secret = make_cloud_key()
            with open(args.key_file, "w") as fh:
                json.dump({"api_key": api_key, "secret": secret}, fh)
    FakeCoinbase(api_key=api_key, secret=secret, state_file=args.state_file).serve_forever(args.port)


if __name__ == "__main__":
    main()
