"""The live venue port (PLAN.md "The live venue port") over ccxt.pro: one exchange object per account.

The engine's thread calls submit/cancel/query; they return at once and queue a request for the sender task.
What the venue says comes back from poll() (and on_tick/on_bar), in order, fills before the event they caused:

  sources   ccxt.pro watch_orders / watch_my_trades / watch_balance (primary); REST resyncs (fetch_open_orders,
            fetch_my_trades since the last trade seen, the order by client id) when the socket has been quiet
            longer than ``stale_after_s`` while orders are open, after a socket failure, while the socket is down,
            and when a final status arrives before its fills;
  events    the adapter derives them from its own map of orders: ACKNOWLEDGED once (venue order id), each fill
            once (Fill id stable_id("fill", exchange, venue_trade_id)) followed by PARTIALLY_FILLED / FILLED, and
            a final CANCELED / EXPIRED / REJECTED only once every fill the venue counted has been reported;
  errors    errors.classify: definite refusals REJECTED, doubtful outcomes UNKNOWN (resolved by query, never by
            sending again), 429 waited and sent again, 418 opens the breaker (health "halt");
  limits    ccxt's limiter plus the account's shared token bucket and the venue's used-weight header.

Subclasses (binance.py, coinbase.py) say how to build the exchange object and the few calls that differ.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from streaming import metrics
from streaming.venues.wake import wake
from streaming.venues import limits
from streaming.venues.errors import Outcome, classify, redact
from streaming.venues.rules import Prepared, Refused, prepare
from trading.oms.reconcile import VenueOrder, VenueSnapshot, VenueTrade
from trading.records import (
    NS_PER_MS,
    Bar,
    Fill,
    Liquidity,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Tick,
    TimeInForce,
    stable_id,
)

log = logging.getLogger(__name__)
# ccxt logs every request at DEBUG with its headers (X-MBX-APIKEY) and signed URL: its own logger for our
# exchange objects, never below INFO, so a DEBUG root logger cannot print a key or a signature
WIRE_LOG = logging.getLogger("streaming.venues.wire")
WIRE_LOG.setLevel(logging.INFO)

ZERO = Decimal(0)
TERMINAL = frozenset((OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED))
CCXT_STATUS = {"open": OrderStatus.ACKNOWLEDGED, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
               "cancelled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED, "rejected": OrderStatus.REJECTED}

# the HTTP status and headers of the answer to the request made by the current task (ccxt's
# last_response_headers is shared by concurrent requests; a context variable is per task)
_RESPONSE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tradeloop_venue_response", default=None)


def with_response_hook(base: type) -> type:
    """A subclass of ccxt exchange class ``base`` whose ``on_rest_response`` (ccxt's hook, called for every
    answer) records status and headers for the asking task and feeds ``tradeloop_on_response``."""

    def on_rest_response(self, code, reason, url, method, response_headers, response_body, request_headers,
                         request_body):
        box = _RESPONSE.get()
        if box is not None:
            box["status"], box["headers"] = code, response_headers
        hook = getattr(self, "tradeloop_on_response", None)
        if hook is not None:
            hook(code, response_headers)
        return base.on_rest_response(self, code, reason, url, method, response_headers, response_body,
                                     request_headers, request_body)

    return type(f"Tradeloop{base.__name__}", (base,), {"on_rest_response": on_rest_response})


class VenueCallError(Exception):
    """A venue call failed for good (after 429 waits / a clock re-sync); ``outcome`` says what it means."""

    def __init__(self, outcome: Outcome, detail: str, status: int | None = None):
        super().__init__(f"{outcome.reason}: {detail}")
        self.outcome, self.status = outcome, status


def _dec(value, default: Decimal | None = ZERO) -> Decimal | None:
    if value is None or value == "":
        return default
    return Decimal(str(value))


def _ns(ms) -> int | None:
    return int(ms) * NS_PER_MS if ms is not None else None


@dataclass(slots=True)
class _Order:
    """The adapter's view of one order."""

    request: OrderRequest
    amount: Decimal  # as sent, after the lot step
    price: Decimal | None
    status: OrderStatus = OrderStatus.NEW
    venue_order_id: str | None = None
    acked: bool = False
    filled: Decimal = ZERO  # sum of the fills reported
    venue_filled: Decimal = ZERO  # the venue's cumulative figure
    final: OrderStatus | None = None  # the venue's final status, held until its fills are reported
    final_ts: int = 0
    behind_since: float = 0.0  # monotonic time since the venue has counted fills not reported yet (0: none)

    @property
    def cid(self) -> str:
        return self.request.client_order_id


class CcxtVenue:
    """Shared logic; see the module docstring.  Time-related constructor parameters are seconds."""

    external = True
    exchange_name = "ccxt"
    # None: ccxt corrects signed timestamps by the measured offset (Binance); else the most the local clock may be
    # off the venue's (Coinbase signs JWTs with the local clock: a skewed machine is refused with a clear reason)
    clock_tolerance_ms: int | None = None
    ws_streams: tuple[str, ...] = ("orders", "trades", "balance")  # which watch_* the venue offers

    def __init__(self, *, account: str, api_key: str, secret: str, symbols: Iterable[str],
                 api_url: str = "", budget_per_min: float = 600, stale_after_s: float = 30.0,
                 unreachable_halt_s: float = 60.0, timeout_s: float = 10.0, rest_poll_s: float = 5.0,
                 fill_grace_s: float = 1.0, housekeeping_s: float = 0.5, reconnect_base_s: float = 0.5,
                 reconnect_max_s: float = 30.0, max_429_retries: int = 5, retry_after_cap_s: float = 60.0,
                 ban_default_s: float = 120.0, rate_limit_ms: float | None = None, use_websocket: bool = True,
                 reconnect_settle_s: float = 0.5, budget_burst: float | None = None,
                 strategy_default: str = "", exchange_options: dict | None = None, sandbox: bool = False):
        if not api_key or not secret:
            raise ValueError(f"{self.exchange_name}: account {account!r} needs an api key and secret")
        self.account = account
        self.symbols = list(dict.fromkeys(symbols))
        if not self.symbols:
            raise ValueError(f"{self.exchange_name}: account {account!r} trades no symbols")
        self._api_key, self._secret = api_key, secret
        self.api_url = api_url.rstrip("/")
        self.stale_after_s, self.unreachable_halt_s = stale_after_s, unreachable_halt_s
        self.timeout_s, self.rest_poll_s, self.fill_grace_s = timeout_s, rest_poll_s, fill_grace_s
        self.housekeeping_s = housekeeping_s
        self.reconnect_base_s, self.reconnect_max_s = reconnect_base_s, reconnect_max_s
        self.reconnect_settle_s = reconnect_settle_s
        self.max_429_retries, self.retry_after_cap_s, self.ban_default_s = (max_429_retries, retry_after_cap_s,
                                                                            ban_default_s)
        self.rate_limit_ms, self.use_websocket = rate_limit_ms, use_websocket
        self.strategy_default, self.sandbox = strategy_default, sandbox
        self._exchange_options = exchange_options or {}
        self._labels = (self.exchange_name, account)
        self.budget = limits.account_budget(self.exchange_name, account, budget_per_min, budget_burst)
        self.weight = limits.UsedWeight(self.exchange_name, account, self.budget)
        self.breaker = limits.Breaker()
        self.exchange = None
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self._by_vid: dict[str, str] = {}
        self._orphans: OrderedDict[str, list[dict]] = OrderedDict()  # trades of orders not known yet, by vid
        self._seen_fills: OrderedDict[str, None] = OrderedDict()
        self._out: deque[OrderEvent | Fill] = deque()
        self._requests: deque[tuple[str, str, str | None]] = deque()  # (kind, client_order_id, symbol)
        self._queries_pending: set[str] = set()
        self._last_trade: dict[str, tuple[int, str]] = {}  # symbol -> (venue ts ms, venue trade id), newest seen
        self._last_price: dict[str, Decimal] = {}
        self.balances: dict[str, Decimal] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._started_ms = 0
        self._last_ws = 0.0  # monotonic time of the last user-data message
        self._ws_failures: dict[str, int] = {}
        self._redial: dict[str, float] = {}  # stream -> when it dialled again after a failure
        self._last_resync = 0.0
        self._unreachable_since: float | None = None
        self._unreachable_detail = ""
        self._halted_unreachable = False  # latched: cleared once the venue answers and open orders are cancelled
        self._recovering = False

    # ------------------------------------------------------------------ the port (engine thread)

    def submit(self, order: OrderRequest) -> list:
        if order.client_order_id in self._orders:
            # the order exists (we sent it): report its real state instead of trading it twice
            log.warning("%s: client order id %s submitted again; querying it", self.exchange_name,
                        order.client_order_id)
            self.query(order.client_order_id, order.symbol, order.ts)
            return []
        reject = None
        prepared = Prepared(order.quantity, order.price)
        if self.breaker.open:
            reject = "venue_ip_banned"
        elif self._halted_unreachable:
            reject = "venue_unreachable"
        elif order.account != self.account:
            reject = "wrong_account"
        elif self.exchange is None or not self.exchange.markets:
            reject = "venue_not_started"
        else:
            try:
                prepared = prepare(self.exchange, order, self._last_price.get(order.symbol))
            except Refused as refused:
                reject = refused.reason
                log.info("%s: order %s refused before sending: %s", self.exchange_name, order.client_order_id,
                         refused)
        tracked = _Order(order, prepared.amount, prepared.price)
        self._remember(tracked)
        if reject is not None:
            self._emit(tracked, OrderStatus.REJECTED, order.ts or time.time_ns(), reject)
            return []
        tracked.status = OrderStatus.SUBMITTING
        self._enqueue("submit", order.client_order_id, order.symbol)
        return []

    def cancel(self, client_order_id: str, ts: int) -> list:
        tracked = self._orders.get(client_order_id)
        if tracked is None or tracked.status in TERMINAL:
            return []
        self._enqueue("cancel", client_order_id, tracked.request.symbol)
        return []

    def replace(self, client_order_id: str, new_quantity: Decimal | None, new_price: Decimal | None,
                ts: int) -> list:
        tracked = self._orders.get(client_order_id)
        if tracked is None:
            return []
        return [OrderEvent(client_order_id, self.account, tracked.request.strategy, tracked.request.symbol,
                           OrderStatus.REJECTED, tracked.filled, max(tracked.amount - tracked.filled, ZERO), ts,
                           "replace_not_supported", tracked.venue_order_id)]

    def query(self, client_order_id: str, symbol: str, ts: int) -> None:
        if client_order_id in self._queries_pending:
            return
        self._queries_pending.add(client_order_id)
        self._enqueue("query", client_order_id, symbol)

    def poll(self) -> list:
        out = self._out
        if not out:
            return []
        events = []
        while out:
            events.append(out.popleft())
        return events

    def on_tick(self, tick: Tick) -> list:
        self._last_price[tick.symbol] = tick.price
        return self.poll()

    def on_bar(self, bar: Bar) -> list:
        self._last_price[bar.symbol] = bar.close
        return self.poll()

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        return [o.request for o in list(self._orders.values())
                if o.status.is_open and (symbol is None or o.request.symbol == symbol)]

    def health(self) -> tuple[str, str | None]:
        if self.breaker.open:
            left = max(0.0, self.breaker.until - time.monotonic())
            return "halt", f"venue_ip_banned for {left:.0f} s more ({self.breaker.reason})"
        down = self._down_for()
        if self._halted_unreachable or down >= self.unreachable_halt_s:
            self._halted_unreachable = True
            state = "cancelling open orders" if self._recovering else f"for {down:.0f} s"
            return "halt", f"venue_unreachable {state}: {self._unreachable_detail}"
        if self._unreachable_since is not None:
            return "degraded", f"venue_unreachable for {down:.0f} s: {self._unreachable_detail}"
        if self._ws_down():
            return "degraded", "user_stream_down: polling over REST"
        return "ok", None

    # ------------------------------------------------------------------ lifecycle

    def build_exchange(self):  # pragma: no cover - subclasses
        raise NotImplementedError

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._started_ms = int(time.time() * 1000)
        self.exchange = self.build_exchange()
        self.exchange.logger = WIRE_LOG
        self.exchange.tradeloop_on_response = self._on_response
        if self.rate_limit_ms is not None:
            self.exchange.rateLimit = self.rate_limit_ms
        try:
            await self._call("load_markets", self.exchange.load_markets)
            if self.exchange.has.get("fetchTime"):
                await self.sync_clock()
                skew = self._skew_text()
                if skew is not None:
                    raise VenueCallError(Outcome("rejected", "clock_skew"), skew)
            refusal = await self.check_account()
        except VenueCallError as exc:
            await self.exchange.close()
            raise RuntimeError(f"{self.exchange_name}: cannot start account {self.account!r}: {exc}") from None
        if refusal is not None:
            await self.exchange.close()
            raise RuntimeError(f"{self.exchange_name}: cannot start account {self.account!r}: {refusal}")
        missing = [s for s in self.symbols if s not in self.exchange.markets]
        if missing:
            await self.exchange.close()
            raise ValueError(f"{self.exchange_name}: no such market(s) {missing} (account {self.account!r})")
        self._last_ws = self._last_resync = time.monotonic()
        self._tasks = [asyncio.create_task(self._sender(), name=f"venue-sender-{self.account}"),
                       asyncio.create_task(self._housekeeping(), name=f"venue-housekeeping-{self.account}")]
        if self.use_websocket:
            for stream in self.ws_streams:
                self._tasks.append(asyncio.create_task(self._watch(stream), name=f"venue-ws-{stream}"))

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self._tasks = []
        if self.exchange is not None:
            await self.exchange.close()

    def _skew_text(self) -> str | None:
        diff = int(self.exchange.options.get("timeDifference", 0) or 0)
        if self.clock_tolerance_ms is None or abs(diff) <= self.clock_tolerance_ms:
            return None
        return (f"this machine's clock is {diff / 1000:+.1f} s off {self.exchange_name}'s; its signed requests need "
                f"it within {self.clock_tolerance_ms / 1000:.0f} s: fix the clock (NTP)")

    async def _clock_off(self) -> str | None:
        try:
            await self.sync_clock()
        except VenueCallError:
            return None
        return self._skew_text()

    async def sync_clock(self) -> int:
        """Re-read the venue's clock (ccxt's load_time_difference): signed requests carry its time."""
        await self._call("fetch_time", self.exchange.load_time_difference, skew_retry=False)
        return int(self.exchange.options.get("timeDifference", 0))

    # ------------------------------------------------------------------ venue-specific (subclasses)

    async def check_account(self) -> str | None:
        """An account setting the platform cannot trade with, as one line; None when there is none."""
        return None

    async def create_order(self, order: OrderRequest, prepared: Prepared) -> dict:
        raise NotImplementedError

    async def cancel_order(self, tracked: _Order) -> dict:
        raise NotImplementedError

    async def fetch_by_client_id(self, client_order_id: str, symbol: str,
                                 venue_order_id: str | None) -> dict | None:
        """The venue's order with this client id, or None if it has none."""
        raise NotImplementedError

    async def fetch_trades_since(self, symbol: str) -> list[dict]:
        """The account's trades of ``symbol`` since the newest one seen (or since start)."""
        raise NotImplementedError

    async def fetch_order_trades(self, symbol: str, venue_order_id: str, since_ms: int | None) -> list[dict]:
        trades = await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, since_ms)
        return [t for t in trades if str(t.get("order")) == venue_order_id]

    def client_id_of(self, order: dict) -> str | None:
        return order.get("clientOrderId") or None

    def status_of(self, order: dict) -> OrderStatus | None:
        """The order's status in OMS terms (None: nothing to report, e.g. "canceling")."""
        return CCXT_STATUS.get(order.get("status") or "")

    # ------------------------------------------------------------------ calls

    async def _call(self, kind: str, fn, *args, skew_retry: bool = True, **kwargs):
        """One venue request through the budget, with 429 waits, the 418 breaker and one clock re-sync."""
        rate_limited = 0
        skew_fixed = not skew_retry
        while True:
            if self.breaker.open:
                raise VenueCallError(Outcome("banned", "venue_ip_banned"), self.breaker.reason or "ip banned")
            waited = await self.budget.acquire()
            if waited:
                metrics.VENUE_BUDGET_WAIT.labels(*self._labels).inc(waited)
            box: dict = {}
            token = _RESPONSE.set(box)
            metrics.VENUE_REQUESTS.labels(*self._labels, kind).inc()
            try:
                result = await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is classified
                status = box.get("status")
                outcome = classify(exc, status)
                detail = redact(str(exc), (self._api_key, self._secret))
                metrics.VENUE_ERRORS.labels(*self._labels, outcome.reason).inc()
                if outcome.unreachable:
                    self._mark_unreachable(f"{outcome.reason} ({kind})")
                elif status is not None:
                    self._mark_reachable()
                if outcome.kind == "rate_limited":
                    metrics.VENUE_RATE_LIMITED.labels(*self._labels).inc()
                    if rate_limited < self.max_429_retries:
                        rate_limited += 1
                        wait = limits.retry_after_s(box.get("headers"), 1.0, self.retry_after_cap_s)
                        log.warning("%s %s: 429 rate limited; waiting %.1f s, then sending again",
                                    self.exchange_name, kind, wait)
                        await asyncio.sleep(wait)
                        continue
                elif outcome.kind == "banned":
                    metrics.VENUE_IP_BANS.labels(*self._labels).inc()
                    wait = limits.retry_after_s(box.get("headers"), self.ban_default_s, 24 * 3600.0)
                    self.breaker.trip(wait, detail)
                    log.error("%s %s: IP banned (418) for %.0f s: %s", self.exchange_name, kind, wait, detail)
                elif outcome.kind == "clock_skew" and not skew_fixed:
                    skew_fixed = True
                    try:
                        diff = await self.sync_clock()
                        log.warning("%s %s: venue refused our timestamp; clock re-read (offset %d ms), sending "
                                    "again", self.exchange_name, kind, diff)
                        continue
                    except VenueCallError:
                        pass
                elif outcome.reason == "authentication_failed" and self.clock_tolerance_ms is not None:
                    skew = await self._clock_off()
                    if skew is not None:
                        outcome = Outcome("rejected", "clock_skew")
                        detail = skew
                log.debug("%s %s failed: %s", self.exchange_name, kind, detail)
                raise VenueCallError(outcome, detail, status) from None
            finally:
                _RESPONSE.reset(token)
            self._mark_reachable()
            return result

    def _on_response(self, code: int, headers: dict) -> None:
        self.weight.observe(headers)

    # ------------------------------------------------------------------ reachability

    def _mark_unreachable(self, detail: str) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            log.warning("%s: venue unreachable (%s)", self.exchange_name, detail)
        self._unreachable_detail = detail

    def _mark_reachable(self) -> None:
        self._unreachable_since = None

    def _down_for(self) -> float:
        return 0.0 if self._unreachable_since is None else time.monotonic() - self._unreachable_since

    def _ws_down(self) -> bool:
        return self.use_websocket and any(n > 0 for n in self._ws_failures.values())

    # ------------------------------------------------------------------ queue and tasks

    def _enqueue(self, kind: str, client_order_id: str, symbol: str | None) -> None:
        self._requests.append((kind, client_order_id, symbol))
        wake(self._loop, self._wake)

    async def _sender(self) -> None:
        while not self._closing:
            if not self._requests:
                self._wake.clear()
                if not self._requests:
                    await self._wake.wait()
                continue
            kind, cid, symbol = self._requests.popleft()
            try:
                if kind == "submit":
                    await self._send_submit(cid)
                elif kind == "cancel":
                    await self._send_cancel(cid)
                elif kind == "query":
                    self._queries_pending.discard(cid)
                    await self._query(cid, symbol)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one request must not stop the sender
                log.exception("%s: %s %s failed unexpectedly", self.exchange_name, kind, cid)

    async def _send_submit(self, cid: str) -> None:
        tracked = self._orders[cid]
        order = tracked.request
        now = time.time_ns()
        if self.breaker.open:
            self._emit(tracked, OrderStatus.REJECTED, now, "venue_ip_banned")
            return
        if self._halted_unreachable:
            self._emit(tracked, OrderStatus.REJECTED, now, "venue_unreachable")
            return
        try:
            answer = await self.create_order(order, Prepared(tracked.amount, tracked.price))
        except VenueCallError as exc:
            outcome = exc.outcome
            if tracked.status in TERMINAL or tracked.acked:
                return  # the socket already told us what happened
            if outcome.kind == "unknown":
                log.warning("%s: order %s outcome unknown: %s", self.exchange_name, cid, exc)
                self._emit(tracked, OrderStatus.UNKNOWN, now, outcome.reason)
            else:
                reason = outcome.reason if outcome.kind != "not_found" else "invalid_order"
                log.info("%s: order %s rejected: %s", self.exchange_name, cid, exc)
                self._emit(tracked, OrderStatus.REJECTED, now, reason)
            return
        self._apply_order(answer, cid)

    async def _send_cancel(self, cid: str) -> None:
        tracked = self._orders.get(cid)
        if tracked is None or tracked.status in TERMINAL:
            return
        try:
            answer = await self.cancel_order(tracked)
        except VenueCallError as exc:
            log.info("%s: cancel of %s failed (%s); asking the venue for its state", self.exchange_name, cid, exc)
            if exc.outcome.kind != "banned":
                self.query(cid, tracked.request.symbol, 0)
            return
        self._apply_order(answer, cid)

    async def _query(self, cid: str, symbol: str | None) -> None:
        tracked = self._orders.get(cid)
        symbol = symbol or (tracked.request.symbol if tracked else None)
        if symbol is None:
            return
        try:
            order = await self.fetch_by_client_id(cid, symbol, tracked.venue_order_id if tracked else None)
        except VenueCallError as exc:
            log.warning("%s: query of %s failed: %s", self.exchange_name, cid, exc)
            return  # the OMS asks again; the venue's answer is the only thing that resolves it
        if order is None:
            if tracked is None:
                self._out.append(OrderEvent(cid, self.account, self.strategy_default, symbol, OrderStatus.REJECTED,
                                            ZERO, ZERO, time.time_ns(), "not_found_at_venue"))
            elif tracked.status not in TERMINAL and tracked.status is not OrderStatus.SUBMITTING:
                self._emit(tracked, OrderStatus.REJECTED, time.time_ns(), "not_found_at_venue")
            return
        if tracked is None:
            tracked = self._adopt(cid, order)
        vid = str(order["id"])
        self._register_vid(tracked, vid)
        if _dec(order.get("filled")) > tracked.filled:
            try:
                since = order.get("timestamp")
                for trade in await self.fetch_order_trades(symbol, vid, since):
                    self._apply_trade(trade)
            except VenueCallError as exc:
                log.warning("%s: trades of %s not fetched: %s", self.exchange_name, cid, exc)
        self._apply_order(order, cid)

    def _adopt(self, cid: str, order: dict) -> _Order:
        """An order of ours the adapter did not know (asked about after a restart)."""
        side = Side.BUY if order.get("side") == "buy" else Side.SELL
        order_type = OrderType.MARKET if order.get("type") == "market" else OrderType.LIMIT
        amount = _dec(order.get("amount"))
        request = OrderRequest(cid, self.account, self.strategy_default, self.exchange_name, order["symbol"], side,
                               order_type, amount, _dec(order.get("price"), None),
                               time_in_force=TimeInForce.GTC, post_only=bool(order.get("postOnly")))
        tracked = _Order(request, amount, request.price, status=OrderStatus.UNKNOWN)
        self._remember(tracked)
        return tracked

    # ------------------------------------------------------------------ applying what the venue says

    def _remember(self, tracked: _Order) -> None:
        self._orders[tracked.cid] = tracked
        if len(self._orders) > 20000:  # forget the oldest finished orders
            for cid in [c for c, o in list(self._orders.items())[:5000] if o.status in TERMINAL]:
                self._by_vid.pop(self._orders.pop(cid).venue_order_id or "", None)

    def _register_vid(self, tracked: _Order, vid: str | None) -> None:
        if not vid or tracked.venue_order_id == vid:
            return
        # one venue order is one client order: a second mapping would book one order's fills to another
        owner = self._by_vid.get(vid)
        if tracked.venue_order_id is not None or (owner is not None and owner != tracked.cid):
            log.error("%s: venue order %s not mapped to %s: it is %s's, and %s is venue order %s",
                      self.exchange_name, vid, tracked.cid, owner, tracked.cid, tracked.venue_order_id)
            return
        log.info("%s: order %s is venue order %s", self.exchange_name, tracked.cid, vid)
        tracked.venue_order_id = vid
        self._by_vid[vid] = tracked.cid
        for trade in self._orphans.pop(vid, []):
            self._apply_trade(trade)

    def _emit(self, tracked: _Order, status: OrderStatus, ts: int, reason: str | None = None) -> None:
        tracked.status = status
        if status is not OrderStatus.UNKNOWN and status is not OrderStatus.REJECTED:
            tracked.acked = True
        req = tracked.request
        self._out.append(OrderEvent(req.client_order_id, self.account, req.strategy, req.symbol, status,
                                    tracked.filled, max(tracked.amount - tracked.filled, ZERO), ts, reason,
                                    tracked.venue_order_id))

    def _ack(self, tracked: _Order, ts: int) -> None:
        if not tracked.acked:
            self._emit(tracked, OrderStatus.ACKNOWLEDGED, ts)

    def _apply_order(self, order: dict, cid: str | None = None) -> None:
        """A ccxt order structure (create/cancel answer, watch_orders, fetch_order, fetch_open_orders)."""
        vid = str(order["id"]) if order.get("id") is not None else None
        cid = self.client_id_of(order) or cid or (self._by_vid.get(vid) if vid else None)
        tracked = self._orders.get(cid) if cid else None
        if tracked is None and vid in self._by_vid:
            tracked = self._orders.get(self._by_vid[vid])
        if tracked is None or tracked.status in TERMINAL:
            return  # not ours (reconciliation sees it), or already reported
        self._register_vid(tracked, vid)
        ts = _ns(order.get("lastUpdateTimestamp") or order.get("timestamp")) or time.time_ns()
        status = self.status_of(order)
        if status is OrderStatus.REJECTED and tracked.filled == 0:
            self._emit(tracked, OrderStatus.REJECTED, ts, "venue_rejected")
            return
        if status is None:  # canceling, or a status ccxt does not unify: nothing to report yet
            return
        self._ack(tracked, ts)
        for trade in order.get("trades") or []:  # Binance FULL answers carry the order's fills
            if trade.get("order") is None:
                trade = {**trade, "order": vid}
            self._apply_trade(trade)
            if tracked.status in TERMINAL:
                return
        tracked.venue_filled = max(tracked.venue_filled, _dec(order.get("filled")))
        if tracked.filled < tracked.venue_filled and not tracked.behind_since:
            tracked.behind_since = time.monotonic()  # fills the venue counted, not seen yet: fetched if late
        if status is OrderStatus.ACKNOWLEDGED:
            return  # partial fills are reported by their trades
        tracked.final, tracked.final_ts = status, ts
        self._settle(tracked)

    def _settle(self, tracked: _Order) -> None:
        """Report the venue's final status once every fill it counted has been reported."""
        if tracked.final is None or tracked.status in TERMINAL or tracked.filled < tracked.venue_filled:
            return
        self._emit(tracked, tracked.final, tracked.final_ts)

    def _apply_trade(self, trade: dict) -> None:
        """A ccxt trade structure (watch_my_trades, fetch_my_trades, an order's trades)."""
        tid = trade.get("id")
        if tid is None:
            return
        fill_id = stable_id("fill", self.exchange_name, tid)
        if fill_id in self._seen_fills:
            return
        vid = str(trade.get("order")) if trade.get("order") is not None else None
        symbol = trade.get("symbol")
        if symbol and trade.get("timestamp") is not None:
            newest = self._last_trade.get(symbol)
            if newest is None or (int(trade["timestamp"]), str(tid)) > newest:
                self._last_trade[symbol] = (int(trade["timestamp"]), str(tid))
        cid = self._by_vid.get(vid) if vid else None
        tracked = self._orders.get(cid) if cid else None
        if tracked is None:
            if vid is not None:  # its order may not be known yet (the socket can beat the create answer)
                self._orphans.setdefault(vid, []).append(trade)
                while len(self._orphans) > 1000:
                    self._orphans.popitem(last=False)
            return
        self._seen_fills[fill_id] = None
        while len(self._seen_fills) > 200000:
            self._seen_fills.popitem(last=False)
        ts = _ns(trade.get("timestamp")) or time.time_ns()
        self._ack(tracked, ts)
        quantity = _dec(trade.get("amount"))
        fee = trade.get("fee") or {}
        req = tracked.request
        side = Side(trade["side"]) if trade.get("side") in ("buy", "sell") else req.side
        liquidity = Liquidity.MAKER if trade.get("takerOrMaker") == "maker" else Liquidity.TAKER
        self._out.append(Fill(fill_id, req.client_order_id, self.account, req.strategy, self.exchange_name,
                              req.symbol, side, _dec(trade.get("price")), quantity, _dec(fee.get("cost")),
                              fee.get("currency") or req.symbol.split("/")[1], liquidity, ts))
        log.info("%s: trade %s of venue order %s is a fill of %s", self.exchange_name, tid, vid, req.client_order_id)
        tracked.filled += quantity
        tracked.venue_filled = max(tracked.venue_filled, tracked.filled)
        if tracked.filled >= tracked.venue_filled:
            tracked.behind_since = 0.0
        if tracked.final is not None:
            self._settle(tracked)
        else:
            self._emit(tracked, OrderStatus.FILLED if tracked.filled >= tracked.amount
                       else OrderStatus.PARTIALLY_FILLED, ts)

    # ------------------------------------------------------------------ websocket

    async def _watch(self, stream: str) -> None:
        exchange = self.exchange
        fn = {"orders": exchange.watch_orders, "trades": exchange.watch_my_trades,
              "balance": exchange.watch_balance}[stream]
        self._ws_failures[stream] = 0
        while not self._closing:
            try:
                items = await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every socket failure leads to a reconnect
                if self._closing:
                    return
                failures = self._ws_failures[stream] = self._ws_failures[stream] + 1
                if isinstance(exc, KeyError):
                    # ccxt 4.5.90: a refused subscription surfaces as KeyError('spot') and every later watch on
                    # this exchange object hangs (INFRA-NOTES): stop watching, poll over REST (health: degraded)
                    log.error("%s: user stream %s subscription refused; polling over REST from now on",
                              self.exchange_name, stream)
                    return
                metrics.VENUE_WS_RECONNECTS.labels(*self._labels).inc()
                delay = min(self.reconnect_base_s * 2 ** (failures - 1), self.reconnect_max_s)
                log.warning("%s: user stream %s failed (%s); reconnecting in %.1f s", self.exchange_name, stream,
                            redact(f"{type(exc).__name__} {exc}", (self._api_key, self._secret)), delay)
                await asyncio.sleep(delay)
                # ccxt dials and subscribes again inside the next watch call; the housekeeper fetches what the
                # gap lost once the new socket has had reconnect_settle_s to come up
                self._redial[stream] = time.monotonic()
                continue
            self._last_ws = time.monotonic()
            self._ws_failures[stream] = 0
            if stream == "orders":
                for order in items:
                    self._apply_order(order)
            elif stream == "trades":
                for trade in items:
                    self._apply_trade(trade)
            else:
                self.balances = {c: _dec(v) for c, v in (items.get("total") or {}).items() if v is not None}

    # ------------------------------------------------------------------ housekeeping: watchdog, resyncs

    def _open_tracked(self) -> list[_Order]:
        return [o for o in list(self._orders.values())
                if o.status.is_open and o.status not in (OrderStatus.NEW, OrderStatus.SUBMITTING)]

    async def _housekeeping(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.housekeeping_s)
            try:
                await self._housekeep_once()
            except asyncio.CancelledError:
                raise
            except VenueCallError as exc:
                log.debug("%s: housekeeping call failed: %s", self.exchange_name, exc)
            except Exception:  # noqa: BLE001 - the watchdog must keep running
                log.exception("%s: housekeeping failed", self.exchange_name)

    async def _housekeep_once(self) -> None:
        now = time.monotonic()
        self.health()  # latches the unreachable halt once the limit has passed
        if self._unreachable_since is not None:
            if now - self._last_resync >= min(self.rest_poll_s, max(self.unreachable_halt_s / 4, 0.05)):
                self._last_resync = now
                await self._call("fetch_time", self.exchange.fetch_time)  # a probe: success marks it reachable
            return
        if self._halted_unreachable:
            await self._recover()
            return
        open_orders = self._open_tracked()
        redialled = [s for s, at in list(self._redial.items()) if now - at >= self.reconnect_settle_s]
        if redialled:
            for stream in redialled:
                del self._redial[stream]
                self._ws_failures[stream] = 0  # dialled and not failed since: up (ccxt raises when it is not)
            await self.resync("reconnect")
            return
        waiting = {o.request.symbol for o in open_orders
                   if o.behind_since and now - o.behind_since >= self.fill_grace_s}
        if waiting:
            await self.resync("fills_missing", waiting)
            return
        if not open_orders:
            return
        since_resync = now - self._last_resync
        if not self.use_websocket or self._ws_down() or "trades" not in self.ws_streams:
            if since_resync >= self.rest_poll_s:
                await self.resync("fallback")
        elif now - self._last_ws >= self.stale_after_s and since_resync >= self.stale_after_s:
            log.warning("%s: user stream quiet for %.1f s with %d open order(s); resyncing over REST",
                        self.exchange_name, now - self._last_ws, len(open_orders))
            await self.resync("stale")

    async def resync(self, cause: str, symbols: Iterable[str] | None = None) -> None:
        """Fills since the newest seen, open orders, and the final state of orders no longer open, over REST."""
        self._last_resync = time.monotonic()
        metrics.VENUE_RESYNCS.labels(*self._labels, cause).inc()
        symbols = set(symbols) if symbols is not None else {o.request.symbol for o in self._open_tracked()}
        for symbol in sorted(symbols):
            for trade in await self.fetch_trades_since(symbol):
                self._apply_trade(trade)
            venue_open = await self._call("fetch_open_orders", self.exchange.fetch_open_orders, symbol)
            still_open = set()
            for order in venue_open:
                self._apply_order(order)
                still_open.add(self.client_id_of(order) or self._by_vid.get(str(order.get("id"))))
            for tracked in self._open_tracked():
                # an UNKNOWN order is resolved when the OMS asks (query): a late-processed request is its call
                if (tracked.request.symbol == symbol and tracked.cid not in still_open
                        and tracked.status is not OrderStatus.UNKNOWN):
                    await self._query(tracked.cid, symbol)

    async def _recover(self) -> None:
        """The venue answers again after a halt: cancel the account's open orders, report their final state."""
        self._recovering = True
        try:
            log.warning("%s: venue reachable again after a halt; cancelling open orders of %s",
                        self.exchange_name, self.account)
            for symbol in self.symbols:
                for order in await self._call("fetch_open_orders", self.exchange.fetch_open_orders, symbol):
                    try:
                        answer = await self._call("cancel_order", self.exchange.cancel_order, str(order["id"]),
                                                  symbol)
                        self._apply_order({**answer, "clientOrderId": self.client_id_of(order)})
                    except VenueCallError as exc:
                        if exc.outcome.kind != "not_found":
                            raise
            await self.resync("recovered", set(self.symbols))
            self._halted_unreachable = False
        finally:
            self._recovering = False

    # ------------------------------------------------------------------ reconciliation

    async def snapshot(self, since_ns: int) -> VenueSnapshot:
        """Open orders now, the account's trades with ts >= ``since_ns``, total balances (free + locked), as
        the venue reports them; every symbol the account trades."""
        ts = time.time_ns()
        since_ms = since_ns // NS_PER_MS
        open_orders, trades = [], []
        for symbol in self.symbols:
            for order in await self._call("fetch_open_orders", self.exchange.fetch_open_orders, symbol):
                open_orders.append(self._venue_order(order))
            for trade in await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, since_ms):
                if (_ns(trade.get("timestamp")) or 0) >= since_ns:
                    trades.append(self._venue_trade(trade))
        balance = await self._call("fetch_balance", self.exchange.fetch_balance)
        balances = {c: _dec(v) for c, v in (balance.get("total") or {}).items() if v is not None}
        return VenueSnapshot(ts, open_orders, trades, balances)

    def _venue_order(self, order: dict) -> VenueOrder:
        vid = str(order["id"])
        filled = _dec(order.get("filled"))
        status = self.status_of(order) or OrderStatus.ACKNOWLEDGED
        if status is OrderStatus.ACKNOWLEDGED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        return VenueOrder(self.client_id_of(order) or self._by_vid.get(vid), vid, order["symbol"],
                          Side(order["side"]), OrderType.MARKET if order.get("type") == "market" else OrderType.LIMIT,
                          _dec(order.get("amount")), _dec(order.get("price"), None), status, filled,
                          _ns(order.get("lastUpdateTimestamp") or order.get("timestamp")) or 0)

    def _venue_trade(self, trade: dict) -> VenueTrade:
        vid = str(trade["order"]) if trade.get("order") is not None else ""
        fee = trade.get("fee") or {}
        return VenueTrade(str(trade["id"]), self._by_vid.get(vid), vid, trade["symbol"], Side(trade["side"]),
                          _dec(trade.get("price")), _dec(trade.get("amount")), _dec(fee.get("cost")),
                          fee.get("currency") or trade["symbol"].split("/")[1],
                          Liquidity.MAKER if trade.get("takerOrMaker") == "maker" else Liquidity.TAKER,
                          _ns(trade.get("timestamp")) or 0)
