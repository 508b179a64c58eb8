"""The venue-agnostic part of the fake exchanges: accounts, balances, a tiny matcher, a fault script and the
threaded aiohttp server the protocol layers (binance.py, coinbase.py) plug their routes into.

Market model (deliberately simple, so tests can predict every number):
* each symbol has a settable last price; the "market" has unlimited depth at that price;
* a MARKET order, or a limit order that crosses the last price, fills at once at the last price (taker);
* a limit order that does not cross rests; ``print_trade(symbol, price, qty)`` -- a trade printed by someone
  else -- fills resting orders that cross ``price`` in price-time priority at their own limit price (maker),
  up to ``qty`` in total, and moves the last price;
* fees are charged in the quote asset (taker and maker rates, default 0.1 %);
* funds for resting orders are locked (buy: remaining x limit x (1 + fee); sell: remaining base).

Everything runs under one re-entrant lock, so the test thread and the server thread may both call in.
Listeners (the protocol layers' websocket pushers) are called under that lock, in event order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable

from aiohttp import web

ZERO = Decimal(0)


def now_ms() -> int:
    return int(time.time() * 1000)


def dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except Exception as exc:  # decimal.InvalidOperation
        raise ValueError(f"not a number: {value!r}") from exc


def fmt(value: Decimal, places: int = 8) -> str:
    return f"{value:.{places}f}"


class VenueError(Exception):
    """A refusal by the matching engine; ``kind`` is mapped to each venue's own error answer."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class SymbolSpec:
    base: str
    quote: str
    tick: Decimal = Decimal("0.01")
    step: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    price: Decimal = Decimal("100")  # initial last price

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"


def default_specs(quote: str = "USDT") -> list[SymbolSpec]:
    return [
        SymbolSpec("BTC", quote, tick=Decimal("0.01"), step=Decimal("0.00001"), min_qty=Decimal("0.00001"),
                   price=Decimal("50000")),
        SymbolSpec("ETH", quote, tick=Decimal("0.01"), step=Decimal("0.0001"), min_qty=Decimal("0.0001"),
                   price=Decimal("3000")),
        SymbolSpec("SOL", quote, tick=Decimal("0.01"), step=Decimal("0.001"), min_qty=Decimal("0.001"),
                   price=Decimal("150")),
    ]


@dataclass
class Order:
    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER
    tif: str | None  # GTC | IOC | FOK | None
    qty: Decimal
    price: Decimal | None
    status: str = "NEW"  # NEW PARTIALLY_FILLED FILLED CANCELED EXPIRED
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    created: int = 0
    updated: int = 0
    locked: Decimal = ZERO  # funds locked for the rest of this order (quote for buys, base for sells)
    resting: bool = False
    quote_qty: Decimal | None = None
    fees: Decimal = ZERO
    cancel_client_id: str | None = None  # the id the cancel request carried (Binance reports it)
    meta: dict = field(default_factory=dict)  # venue-specific request details (e.g. Coinbase's order_configuration)

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def to_json(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Decimal):
                out[key] = str(value)
        return out


@dataclass
class Fill:
    trade_id: int
    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    def to_json(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Decimal):
                out[key] = str(value)
        return out


@dataclass
class Account:
    api_key: str
    secret: str
    balances: dict[str, list[Decimal]] = field(default_factory=dict)  # asset -> [free, locked]

    def bal(self, asset: str) -> list[Decimal]:
        return self.balances.setdefault(asset, [ZERO, ZERO])


@dataclass
class Fault:
    kind: str
    params: dict
    remaining: int | None  # requests left; None = until `until` or cleared
    until: float | None  # time.monotonic() deadline


# Listener signature: (event, account, payload). Events: "order" payload {"order", "exec_type", "fill"};
# "balance" payload {"assets": [..]}.
Listener = Callable[[str, str, dict], None]


class Exchange:
    """Accounts, orders, fills and the fault script; no I/O."""

    def __init__(self, specs: list[SymbolSpec] | None = None, taker_fee: str = "0.001", maker_fee: str = "0.001",
                 first_order_id: int = 1000):
        self.lock = threading.RLock()
        self.specs: dict[str, SymbolSpec] = {s.symbol: s for s in (specs or default_specs())}
        self.last: dict[str, Decimal] = {s.symbol: s.price for s in self.specs.values()}
        self.taker_fee = dec(taker_fee)
        self.maker_fee = dec(maker_fee)
        self.accounts: dict[str, Account] = {}
        self.orders: dict[int, Order] = {}
        self.by_client: dict[tuple[str, str], int] = {}  # (account, clientOrderId) -> order id
        self.accepted: dict[str, int] = {}  # clientOrderId -> times accepted
        self.fills: list[Fill] = []
        self._order_ids = itertools.count(first_order_id)
        self._trade_ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.faults: list[Fault] = []
        self.listeners: list[Listener] = []
        self.requests: deque[tuple[str, str]] = deque(maxlen=100_000)  # (method, path) of venue requests

    # ---- accounts and market ------------------------------------------------------------------------
    def add_account(self, api_key: str, secret: str, balances: dict[str, Any] | None = None) -> Account:
        with self.lock:
            acct = self.accounts.get(api_key) or Account(api_key, secret)
            acct.secret = secret
            self.accounts[api_key] = acct
            for asset, amount in (balances or {}).items():
                acct.bal(asset)[0] = dec(amount)
            return acct

    def account(self, api_key: str | None = None) -> Account:
        if api_key is None:
            if not self.accounts:
                raise ValueError("the fake exchange has no account")
            return next(iter(self.accounts.values()))
        try:
            return self.accounts[api_key]
        except KeyError:
            raise ValueError(f"no account with api key {api_key[:4]}...") from None

    def set_balance(self, asset: str, free: Any, locked: Any = None, account: str | None = None) -> None:
        with self.lock:
            acct = self.account(account)
            row = acct.bal(asset)
            row[0] = dec(free)
            if locked is not None:
                row[1] = dec(locked)
            self._emit("balance", acct.api_key, {"assets": [asset]})

    def spec(self, symbol: str) -> SymbolSpec:
        try:
            return self.specs[symbol]
        except KeyError:
            raise VenueError("bad_symbol", symbol) from None

    def set_price(self, symbol: str, price: Any) -> None:
        with self.lock:
            self.spec(symbol)
            self.last[symbol] = dec(price)

    # ---- fault script --------------------------------------------------------------------------------
    def fault(self, kind: str, count: int | None = 1, duration: float | None = None, **params) -> None:
        """Arm a fault for the next ``count`` matching requests, or for ``duration`` seconds (then count=None
        means no count limit), or until ``clear_faults``."""
        with self.lock:
            if duration is not None and count == 1:
                count = None
            until = time.monotonic() + duration if duration is not None else None
            self.faults.append(Fault(kind, dict(params), count, until))

    def clear_faults(self, kind: str | None = None) -> None:
        with self.lock:
            self.faults = [f for f in self.faults if kind is not None and f.kind != kind]

    def active_fault(self, kinds: tuple[str, ...], route: str | None = None, consume: bool = True,
                     default_route: str | None = None) -> Fault | None:
        """The first armed fault of one of ``kinds`` whose ``route`` param (a regex; ``default_route`` when the
        fault has none; none at all = every route) matches ``route`` (None: the matcher's own faults, which
        apply to every order whatever their route); one use is consumed."""
        with self.lock:
            now = time.monotonic()
            self.faults = [f for f in self.faults
                           if (f.until is None or f.until > now) and (f.remaining is None or f.remaining > 0)]
            for f in self.faults:
                if f.kind not in kinds:
                    continue
                want = f.params.get("route", default_route)
                if want and route is not None and not re.fullmatch(want, route):
                    continue
                if consume and f.remaining is not None:
                    f.remaining -= 1
                return f
            return None

    def time_offset_ms(self) -> int:
        f = self.active_fault(("clock_skew",), consume=False)
        return int(f.params.get("offset_ms", 0)) if f else 0

    def server_ms(self) -> int:
        return now_ms() + self.time_offset_ms()

    # ---- events --------------------------------------------------------------------------------------
    def _emit(self, event: str, account: str, payload: dict) -> None:
        for listener in list(self.listeners):
            listener(event, account, payload)

    def _order_event(self, order: Order, exec_type: str, fill: Fill | None = None) -> None:
        self._emit("order", order.account, {"order": order, "exec_type": exec_type, "fill": fill})

    # ---- orders --------------------------------------------------------------------------------------
    def place(self, account: str, symbol: str, side: str, type_: str, qty: Any = None, price: Any = None,
              tif: str | None = None, client_order_id: str | None = None, quote_qty: Any = None,
              meta: dict | None = None) -> tuple[Order, list[Fill]]:
        """Validate, accept, match. Raises VenueError(kind) for a refusal (nothing recorded then)."""
        with self.lock:
            acct = self.account(account)
            spec = self.spec(symbol)
            side = side.upper()
            type_ = type_.upper()
            if side not in ("BUY", "SELL"):
                raise VenueError("invalid", f"side {side}")
            if type_ not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
                raise VenueError("bad_type", type_)
            last = self.last[symbol]
            price = dec(price) if price is not None else None
            if type_ == "MARKET":
                price = None
                if qty is None and quote_qty is not None:
                    qty = (dec(quote_qty) / last).quantize(spec.step, rounding=ROUND_DOWN)
            elif price is None:
                raise VenueError("missing", "price")
            if qty is None:
                raise VenueError("missing", "quantity")
            qty = dec(qty)
            if qty <= 0 or qty < spec.min_qty or qty > spec.max_qty or (qty % spec.step) != 0:
                raise VenueError("lot_size", str(qty))
            if price is not None and (price < spec.min_price or price > spec.max_price or (price % spec.tick) != 0):
                raise VenueError("price_filter", str(price))
            notional = qty * (price if price is not None else last)
            if notional < spec.min_notional or notional > spec.max_notional:
                raise VenueError("notional", str(notional))
            if client_order_id is not None and (acct.api_key, client_order_id) in self.by_client:
                raise VenueError("duplicate", client_order_id)
            crosses = type_ == "MARKET" or (side == "BUY" and price >= last) or (side == "SELL" and price <= last)
            if type_ == "LIMIT_MAKER" and crosses:
                raise VenueError("would_take", client_order_id or "")
            # funds: a taker fill needs qty at the last price; a resting order locks at its limit
            if side == "BUY":  # a crossing limit may rest its remainder at its limit: check at the limit
                need = qty * (price if price is not None else last) * (1 + max(self.taker_fee, self.maker_fee))
                have = acct.bal(spec.quote)[0]
            else:
                need, have = qty, acct.bal(spec.base)[0]
            if need > have or self.active_fault(("insufficient_balance",)):
                raise VenueError("insufficient", f"need {need} have {have}")

            ts = self.server_ms()
            oid = next(self._order_ids)
            if client_order_id is None:
                client_order_id = f"fake{oid}x{next(self._seq)}"
            order = Order(oid, client_order_id, acct.api_key, symbol, side, type_, tif, qty, price,
                          created=ts, updated=ts, quote_qty=dec(quote_qty) if quote_qty is not None else None,
                          meta=dict(meta or {}))
            self.orders[oid] = order
            self.by_client[(acct.api_key, client_order_id)] = oid
            self.accepted[client_order_id] = self.accepted.get(client_order_id, 0) + 1
            self._order_event(order, "NEW")

            fills: list[Fill] = []
            if crosses:
                fills = self._take(order, acct, spec)
            else:
                self._rest(order, acct, spec)
            return order, fills

    def _take(self, order: Order, acct: Account, spec: SymbolSpec) -> list[Fill]:
        """Fill a crossing order at the last price; the partial_fill fault fills only a fraction."""
        qty = order.qty
        partial = self.active_fault(("partial_fill",))
        if partial:
            frac = dec(partial.params.get("fraction", "0.5"))
            qty = (order.qty * frac).quantize(spec.step, rounding=ROUND_DOWN)
        if order.tif == "FOK" and qty < order.qty:
            self._finish(order, "EXPIRED")
            return []
        fills = [self._fill(order, acct, spec, self.last[order.symbol], qty, maker=False)] if qty > 0 else []
        if order.remaining > 0:
            leave = partial.params.get("rest", "expire") if partial else "expire"
            if order.type == "LIMIT" and order.tif == "GTC":
                self._rest(order, acct, spec)  # the rest of a crossing GTC limit waits at its limit
            elif order.type == "MARKET" and leave == "rest":
                order.resting = True  # the rest of the market order fills on later trades, at their price
                self._relock(order, acct, spec)
            else:
                self._finish(order, "EXPIRED")
        return fills

    def _lock_needed(self, order: Order, spec: SymbolSpec) -> Decimal:
        if order.type == "MARKET":  # a resting market remainder: a sell locks its base; a buy's price is unknown
            return order.remaining if order.side == "SELL" else ZERO
        if order.side == "BUY":
            return order.remaining * order.price * (1 + max(self.taker_fee, self.maker_fee))
        return order.remaining

    def _relock(self, order: Order, acct: Account, spec: SymbolSpec) -> None:
        need = self._lock_needed(order, spec) if order.is_open and order.resting else ZERO
        row = acct.bal(spec.quote if order.side == "BUY" else spec.base)
        delta = need - order.locked
        row[0] -= delta
        row[1] += delta
        order.locked = need

    def _rest(self, order: Order, acct: Account, spec: SymbolSpec) -> None:
        if order.tif in ("IOC", "FOK"):
            self._finish(order, "EXPIRED")
            return
        order.resting = True
        self._relock(order, acct, spec)
        self._emit("balance", acct.api_key, {"assets": [spec.quote if order.side == "BUY" else spec.base]})

    def _finish(self, order: Order, status: str, cancel_client_id: str | None = None) -> None:
        acct = self.accounts[order.account]
        spec = self.specs[order.symbol]
        order.status = status
        order.updated = self.server_ms()
        was_locked = order.locked
        self._relock(order, acct, spec)
        order.resting = False
        self._emit("order", order.account, {"order": order, "exec_type": "CANCELED" if status == "CANCELED"
                                            else "EXPIRED", "fill": None, "cancel_client_id": cancel_client_id})
        if was_locked:
            self._emit("balance", acct.api_key, {"assets": [spec.quote if order.side == "BUY" else spec.base]})

    def _fill(self, order: Order, acct: Account, spec: SymbolSpec, price: Decimal, qty: Decimal, maker: bool) -> Fill:
        fee_rate = self.maker_fee if maker else self.taker_fee
        quote_qty = price * qty
        fee = quote_qty * fee_rate
        ts = self.server_ms()
        # release this part's lock first, then move the funds
        order.executed += qty
        order.cum_quote += quote_qty
        order.fees += fee
        order.updated = ts
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        self._relock(order, acct, spec)
        base, quote = acct.bal(spec.base), acct.bal(spec.quote)
        if order.side == "BUY":
            quote[0] -= quote_qty + fee
            base[0] += qty
        else:
            base[0] -= qty
            quote[0] += quote_qty - fee
        if not order.is_open:
            order.resting = False
        fill = Fill(next(self._trade_ids), order.order_id, order.client_order_id, acct.api_key, order.symbol,
                    order.side, price, qty, quote_qty, fee, spec.quote, ts, maker)
        self.fills.append(fill)
        self._order_event(order, "TRADE", fill)
        self._emit("balance", acct.api_key, {"assets": [spec.base, spec.quote]})
        return fill

    def print_trade(self, symbol: str, price: Any, qty: Any) -> list[Fill]:
        """Someone else traded ``qty`` at ``price``: fill resting orders that cross it (best price, then oldest)."""
        with self.lock:
            spec = self.spec(symbol)
            price, left = dec(price), dec(qty)
            self.last[symbol] = price
            book = [o for o in self.orders.values() if o.symbol == symbol and o.is_open and o.resting]
            hits = [o for o in book if o.type == "MARKET"
                    or (o.side == "BUY" and o.price >= price) or (o.side == "SELL" and o.price <= price)]
            hits.sort(key=lambda o: (o.type != "MARKET", -(o.price or 0) if o.side == "BUY" else (o.price or 0),
                                     o.order_id))
            fills = []
            for order in hits:
                if left <= 0:
                    break
                take = min(left, order.remaining)
                fill_price = price if order.type == "MARKET" else order.price
                fills.append(self._fill(order, self.accounts[order.account], spec, fill_price, take,
                                        maker=order.type != "MARKET"))
                left -= take
            return fills

    def find(self, account: str, symbol: str | None, order_id: Any = None, client_order_id: str | None = None) -> Order:
        with self.lock:
            oid = None
            if order_id is not None:
                try:
                    oid = int(order_id)
                except (TypeError, ValueError):
                    raise VenueError("unknown_order", str(order_id)) from None
            elif client_order_id is not None:
                oid = self.by_client.get((account, client_order_id))
            order = self.orders.get(oid) if oid is not None else None
            if order is None or order.account != account or (symbol is not None and order.symbol != symbol):
                raise VenueError("unknown_order", str(order_id or client_order_id))
            return order

    def cancel(self, account: str, symbol: str | None, order_id: Any = None, client_order_id: str | None = None,
               cancel_client_id: str | None = None) -> Order:
        with self.lock:
            order = self.find(account, symbol, order_id, client_order_id)
            if not order.is_open:
                raise VenueError("unknown_order", "not open")
            order.cancel_client_id = cancel_client_id or f"cancel{order.order_id}x{next(self._seq)}"
            self._finish(order, "CANCELED", order.cancel_client_id)
            return order

    def open_orders(self, account: str, symbol: str | None = None) -> list[Order]:
        with self.lock:
            return [o for o in self.orders.values()
                    if o.account == account and o.is_open and (symbol is None or o.symbol == symbol)]

    def account_fills(self, account: str, symbol: str | None = None) -> list[Fill]:
        with self.lock:
            return [f for f in self.fills if f.account == account and (symbol is None or f.symbol == symbol)]

    # ---- what tests read -----------------------------------------------------------------------------
    def books(self) -> dict:
        with self.lock:
            return {
                "orders": {o.client_order_id: {**o.to_json(), "executedQty": str(o.executed)}
                           for o in self.orders.values()},
                "trades": [f.to_json() for f in self.fills],
                "balances": {k: {a: {"free": str(v[0]), "locked": str(v[1])} for a, v in acct.balances.items()}
                             for k, acct in self.accounts.items()},
                "prices": {s: str(p) for s, p in self.last.items()},
                "accepted": dict(self.accepted),
            }

    def accepted_count(self, client_order_id: str) -> int:
        with self.lock:
            return self.accepted.get(client_order_id, 0)

    # ---- persistence (subprocess form: the state outlives a restart of the fake) --------------------------
    def dump(self) -> dict:
        with self.lock:
            return {
                "last": {s: str(p) for s, p in self.last.items()},
                "accounts": {k: {"secret": a.secret,
                                 "balances": {x: [str(v[0]), str(v[1])] for x, v in a.balances.items()}}
                             for k, a in self.accounts.items()},
                "orders": [o.to_json() for o in self.orders.values()],
                "fills": [f.to_json() for f in self.fills],
                "accepted": self.accepted,
            }

    def load(self, state: dict) -> None:
        with self.lock:
            self.last.update({s: dec(p) for s, p in state.get("last", {}).items() if s in self.specs})
            for key, a in state.get("accounts", {}).items():
                acct = Account(key, a["secret"], {x: [dec(v[0]), dec(v[1])] for x, v in a["balances"].items()})
                self.accounts[key] = acct
            num = {"qty", "price", "executed", "cum_quote", "locked", "quote_qty", "fees", "commission"}
            for o in state.get("orders", []):
                order = Order(**{k: (dec(v) if k in num and v is not None else v) for k, v in o.items()})
                self.orders[order.order_id] = order
                self.by_client[(order.account, order.client_order_id)] = order.order_id
            for f in state.get("fills", []):
                self.fills.append(Fill(**{k: (dec(v) if k in num else v) for k, v in f.items()}))
            self.accepted.update(state.get("accepted", {}))
            if self.orders:
                self._order_ids = itertools.count(max(self.orders) + 1)
            if self.fills:
                self._trade_ids = itertools.count(max(f.trade_id for f in self.fills) + 1)


# ---- the server ------------------------------------------------------------------------------------------

CONTROL_OPS = ("set_price", "set_balance", "add_account", "place", "cancel", "clear_faults", "books",
               "accepted_count", "drop_ws", "ws_clients")


class FakeServer:
    """An aiohttp app on 127.0.0.1 run on its own thread and event loop (in-process form), or in the
    foreground (``serve_forever``, subprocess form).  Subclasses add venue routes in ``routes(app)`` and get
    the shared control endpoint ``POST /_fake/<op>`` (JSON in, JSON out) for free."""

    def __init__(self, exchange: Exchange, state_file: str | None = None):
        self.ex = exchange
        self.state_file = state_file
        if state_file and os.path.exists(state_file):
            with open(state_file) as fh:
                self.ex.load(json.load(fh))
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.sessions: list = []  # the venue's websocket sessions (objects with .ws and .account)

    # subclasses override
    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def on_shutdown(self) -> None:
        return None

    # ---- the test-side API (thread-safe); the subprocess form reaches the same through POST /_fake/<op> ---------
    def set_price(self, symbol: str, price: Any) -> None:
        """Move the last price (fills nothing: use ``trade`` for that)."""
        self.ex.set_price(symbol, price)
        self.save()

    def trade(self, symbol: str, price: Any, qty: Any) -> list[Fill]:
        """Someone else trades ``qty`` at ``price``: resting orders that cross it fill (maker)."""
        fills = self.ex.print_trade(symbol, price, qty)
        self.save()
        return fills

    def set_balance(self, asset: str, free: Any, locked: Any = None, account: str | None = None) -> None:
        self.ex.set_balance(asset, free, locked, account)
        self.save()

    def add_account(self, api_key: str, secret: str, balances: dict | None = None) -> None:
        self.ex.add_account(api_key, secret, balances)
        self.save()

    def place(self, symbol: str, side: str, type_: str, qty: Any = None, price: Any = None, tif: str | None = "GTC",
              client_order_id: str | None = None, account: str | None = None) -> dict:
        """An order placed on the account by someone else (web UI, another bot): the client did not send it.
        Raises VenueError on a refusal."""
        tif = None if type_.upper() in ("MARKET", "LIMIT_MAKER") else tif
        order, _ = self.ex.place(self.ex.account(account).api_key, symbol, side, type_, qty=qty, price=price, tif=tif,
                                 client_order_id=client_order_id)
        self.save()
        return order.to_json()

    def cancel(self, client_order_id: str, account: str | None = None) -> dict:
        """The venue (or someone else) cancels an order: the client did not ask."""
        order = self.ex.cancel(self.ex.account(account).api_key, None, client_order_id=client_order_id)
        self.save()
        return order.to_json()

    def fault(self, kind: str, count: int | None = 1, duration: float | None = None, **params) -> None:
        self.ex.fault(kind, count, duration, **params)

    def clear_faults(self, kind: str | None = None) -> None:
        self.ex.clear_faults(kind)

    def books(self) -> dict:
        return self.ex.books()

    def accepted_count(self, client_order_id: str) -> int:
        return self.ex.accepted_count(client_order_id)

    def drop_ws(self) -> None:
        """Close every user-data socket (the client sees a disconnect and must subscribe again)."""
        for s in list(self.sessions):
            self.call_in_loop(lambda s=s: asyncio.ensure_future(s.ws.close()))

    def ws_clients(self) -> int:
        """User-data sockets that are subscribed (authenticated)."""
        return sum(1 for s in self.sessions if s.account is not None)

    def control(self, op: str, args: dict) -> Any:
        """``POST /_fake/<op>`` with JSON keyword arguments -> the method of the same name."""
        if op == "fault":
            args = dict(args)
            return self.fault(args.pop("kind"), args.pop("count", 1), args.pop("duration", None), **args)
        if op == "trade":
            return [f.to_json() for f in self.trade(**args)]
        if op == "requests":
            return [list(r) for r in self.ex.requests]
        if op not in CONTROL_OPS:
            raise ValueError(f"unknown control op {op!r}")
        return getattr(self, op)(**args)

    def save(self) -> None:
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.ex.dump(), fh)
        os.replace(tmp, self.state_file)

    async def _control_handler(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        try:
            args = await request.json() if request.can_read_body else {}
            result = self.control(op, args or {})
        except (KeyError, ValueError, TypeError, VenueError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        self.save()
        return web.json_response({"result": result})

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_fake/{op}", self._control_handler)
        self.routes(app)
        return app

    async def _start(self, port: int) -> int:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.2, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> str:
        """Serve on a thread of its own; returns the base URL."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.port = self.loop.run_until_complete(self._start(port))
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._stop())
            self.loop.close()

        self._thread = threading.Thread(target=run, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self.base_url

    async def _stop(self) -> None:
        await self.on_shutdown()
        if self._runner:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self.loop and self._thread and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.save()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def serve_forever(self, port: int) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self.port = await self._start(port)
            print(f"listening {self.base_url}", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await self._stop()
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass

    def call_in_loop(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server loop (from any thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)


def spawn(module: str, *args: str, cwd: str | None = None, timeout: float = 30.0):
    """Start a fake as a subprocess (``python -m <module> --port 0 ...args``); returns (Popen, base URL) once it
    listens.  The caller ends it (proc.kill() / send_signal) and waits for it."""
    import subprocess
    import sys

    root = cwd or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill)  # a fake that never says "listening" must not hang the test
    timer.start()
    try:
        line = proc.stdout.readline().strip()
    finally:
        timer.cancel()
    if not line.startswith("listening "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{module} did not start: {line!r} (exit code {proc.returncode})")
    return proc, line.split()[1]


class Control:
    """The control endpoint of a fake running as a subprocess, with the same methods as the in-process object."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def call(self, op: str, **args) -> Any:
        req = urllib.request.Request(f"{self.base_url}/_fake/{op}", data=json.dumps(args, default=str).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            raise ValueError(json.loads(exc.read()).get("error", str(exc))) from None

    def set_price(self, symbol: str, price: Any) -> None:
        self.call("set_price", symbol=symbol, price=str(price))

    def trade(self, symbol: str, price: Any, qty: Any) -> list[dict]:
        return self.call("trade", symbol=symbol, price=str(price), qty=str(qty))

    def set_balance(self, asset: str, free: Any, locked: Any = None, account: str | None = None) -> None:
        self.call("set_balance", asset=asset, free=str(free), locked=None if locked is None else str(locked),
                  account=account)

    def add_account(self, api_key: str, secret: str, balances: dict | None = None) -> None:
        self.call("add_account", api_key=api_key, secret=secret, balances=balances)

    def fault(self, kind: str, count: int | None = 1, duration: float | None = None, **params) -> None:
        self.call("fault", kind=kind, count=count, duration=duration, **params)

    def clear_faults(self, kind: str | None = None) -> None:
        self.call("clear_faults", kind=kind)

    def books(self) -> dict:
        return self.call("books")

    def accepted_count(self, client_order_id: str) -> int:
        return self.call("accepted_count", client_order_id=client_order_id)

    def drop_ws(self) -> None:
        self.call("drop_ws")

    def place(self, symbol: str, side: str, type_: str, qty: Any = None, price: Any = None, tif: str | None = "GTC",
              client_order_id: str | None = None, account: str | None = None) -> dict:
        return self.call("place", symbol=symbol, side=side, type_=type_, qty=None if qty is None else str(qty),
                         price=None if price is None else str(price), tif=tif, client_order_id=client_order_id,
                         account=account)

    def cancel(self, client_order_id: str, account: str | None = None) -> dict:
        return self.call("cancel", client_order_id=client_order_id, account=account)

    def ws_clients(self) -> int:
        return self.call("ws_clients")

    def requests(self) -> list[list[str]]:
        return self.call("requests")
