"""Interactive Brokers through TWS / IB Gateway with ``ib_async``: the live venue port (PLAN.md), like CcxtVenue.

The gateway is already logged in (no keys here); the adapter connects to its API socket (host, port, client id).
Symbols are "BASE/QUOTE" = US stocks: "AAPL/USD" is Stock("AAPL", "SMART", "USD"); whole shares, 0.01 price tick.

Ids: IB's client-side id is the numeric orderId (per API client id); ours travels in ``Order.orderRef``, which IB
reports back in openOrder and execDetails, so an order is found by our client id (query, resync, snapshot) through
reqAllOpenOrders and reqExecutions, across reconnects and restarts.  ``venue_order_id`` is IB's permId.

What the venue says comes back through poll(), in order, fills before the event they caused:
  live      orderStatus (ack, final status), execDetails + commissionReport (a Fill is emitted once its
            commission is known: stable_id("fill", "ib", execId), each once), error 201 (REJECTED with a reason);
  resync    after every (re)connect and when the venue counted fills not seen yet: all open orders, then the
            executions since the newest seen (fills that happened while disconnected come back here); an order of
            ours no longer open is settled from TWS's completed orders (FILLED, CANCELED canceled_at_venue), or,
            if not there, FILLED if its executions cover it, else CANCELED (not_open_at_venue);
  query     by orderRef: open orders, every execution TWS keeps, completed orders; none: REJECTED
            not_found_at_venue (never sent again);
  poll      while orders are open, a resync every ``resync_s`` as well (orders adopted from another API client
            id get no live reports);
  health    "degraded" while the API socket is down or TWS reports 1100 (lost IB's servers) and for
            ``unreachable_halt_s``; then "halt", latched until reconnected (or 1101/1102) and our open orders are
            cancelled (orders placed under another client id cannot be cancelled by this one: TWS's rule).
Metrics: tradeloop_venue_ws_reconnects (API socket drops), tradeloop_venue_resyncs by cause, _errors by code.
ib_async serves one event loop per process at a time (see ``start``).
Orders sent just before the socket dropped, not acknowledged, become UNKNOWN (network): the OMS queries them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from ib_async import IB, ExecutionFilter, LimitOrder, MarketOrder, Stock
from ib_async import util as ib_util
from ib_async.ib import StartupFetch

from streaming import metrics
from streaming.venues.wake import wake
from trading.oms.reconcile import VenueOrder, VenueSnapshot, VenueTrade
from trading.records import (
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

ZERO = Decimal(0)
TERMINAL = frozenset((OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED))
STARTUP = StartupFetch.POSITIONS | StartupFetch.ORDERS_OPEN | StartupFetch.ACCOUNT_UPDATES
LOST, RESTORED = 1100, (1101, 1102)  # TWS <-> IB servers connectivity
KNOWN_CODES = frozenset((103, 200, 201, 202, 387, 1100, 1101, 1102, 10147))
REJECTED_CODES = {201: None, 200: "bad_symbol", 103: "duplicate_order_id", 387: "unsupported_order_type"}
TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
# reject text (lower case) -> reason, first match wins
REJECT_TEXT = (("margin", "insufficient_funds"), ("insufficient", "insufficient_funds"),
               ("equity with loan", "insufficient_funds"), ("size", "lot_size"), ("price", "invalid_price"),
               ("too small", "below_min_notional"), ("security definition", "bad_symbol"))


def _dec(value) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def _reject_reason(code: int, text: str) -> str:
    fixed = REJECTED_CODES.get(code)
    if fixed:
        return fixed
    low = text.lower()
    return next((reason for needle, reason in REJECT_TEXT if needle in low), "venue_rejected")


def _ns(when) -> int:
    return int(when.timestamp() * 1e9) if isinstance(when, dt.datetime) else time.time_ns()


def _filter_time(ns: int) -> str:
    """An execution filter's time: "yyyymmdd-hh:mm:ss" in UTC (whole seconds)."""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S")


@dataclass(slots=True)
class _Order:
    request: OrderRequest
    status: OrderStatus = OrderStatus.NEW
    order_id: int | None = None  # IB's orderId (of client_id)
    perm_id: int = 0
    acked: bool = False
    filled: Decimal = ZERO  # sum of the fills reported
    venue_filled: Decimal = ZERO  # IB's cumulative figure
    final: OrderStatus | None = None  # IB's final status, held until its fills are reported
    final_ts: int = 0
    final_reason: str | None = None
    sent_at: float = 0.0  # monotonic
    behind_since: float = 0.0

    @property
    def cid(self) -> str:
        return self.request.client_order_id

    @property
    def vid(self) -> str | None:
        return str(self.perm_id) if self.perm_id else None


class IBVenue:
    """See the module docstring.  Time parameters are seconds."""

    external = True
    exchange_name = "ib"

    def __init__(self, *, account: str, symbols: Iterable[str], host: str = "127.0.0.1", port: int = 7497,
                 client_id: int = 1, ib_account: str = "", timeout_s: float = 10.0, unreachable_halt_s: float = 60.0,
                 reconnect_base_s: float = 0.5, reconnect_max_s: float = 30.0, housekeeping_s: float = 0.5,
                 fill_grace_s: float = 1.0, trade_lookback_s: float = 300.0, resync_s: float = 30.0,
                 commission_wait_s: float = 10.0, strategy_default: str = "",
                 sandbox: bool = False, tick: str = "0.01", lot: str = "1"):
        self.account = account
        self.symbols = list(dict.fromkeys(symbols))
        if not self.symbols:
            raise ValueError(f"ib: account {account!r} trades no symbols")
        bad = [s for s in self.symbols if s.count("/") != 1]
        if bad:
            raise ValueError(f"ib: symbols must be BASE/QUOTE (a stock and its currency, e.g. AAPL/USD): {bad}")
        self.host, self.port, self.client_id, self.ib_account = host, int(port), int(client_id), ib_account
        self.timeout_s, self.unreachable_halt_s = timeout_s, unreachable_halt_s
        self.reconnect_base_s, self.reconnect_max_s = reconnect_base_s, reconnect_max_s
        self.housekeeping_s, self.fill_grace_s, self.trade_lookback_s = housekeeping_s, fill_grace_s, trade_lookback_s
        self.resync_s, self.commission_wait_s = resync_s, commission_wait_s
        self._labels = (self.exchange_name, account)
        self.strategy_default, self.sandbox = strategy_default, sandbox
        self.tick, self.lot = Decimal(tick), Decimal(lot)
        self.ib = IB()
        self.ib.RaiseRequestErrors = False
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self._by_oid: dict[int, str] = {}
        self._seen_fills: OrderedDict[str, None] = OrderedDict()
        self._out: deque[OrderEvent | Fill] = deque()
        self._requests: deque[tuple[str, str, str | None]] = deque()
        self._queries_pending: set[str] = set()
        self._newest_exec_ns = 0
        self._started_ns = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._down: asyncio.Event | None = None
        self._io: asyncio.Lock | None = None  # one open-orders request at a time (ib_async keys it "openOrders")
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._connected = False
        self._unreachable_since: float | None = None
        self._unreachable_detail = ""
        self._halted = False  # latched: cleared once reconnected and our open orders are cancelled
        self._last_resync = 0.0
        self.resyncs = 0
        self.connects = 0

    # ------------------------------------------------------------------ the port (engine thread)

    def submit(self, order: OrderRequest) -> list:
        if order.client_order_id in self._orders:
            log.warning("ib: client order id %s submitted again; querying it", order.client_order_id)
            self.query(order.client_order_id, order.symbol, order.ts)
            return []
        tracked = _Order(order)
        self._remember(tracked)
        reject = self._refusal(order)
        if reject is not None:
            self._emit(tracked, OrderStatus.REJECTED, order.ts or time.time_ns(), reject)
            return []
        tracked.status = OrderStatus.SUBMITTING
        self._enqueue("submit", order.client_order_id, order.symbol)
        return []

    def _refusal(self, order: OrderRequest) -> str | None:
        if self._halted:
            return "venue_unreachable"
        if order.account != self.account:
            return "wrong_account"
        if self._loop is None:
            return "venue_not_started"
        if order.symbol not in self.symbols:
            return "bad_symbol"
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT) or order.post_only:
            return "unsupported_order_type"  # IB has no post-only flag for stocks
        if order.quantity <= 0 or order.quantity % self.lot != 0:
            return "lot_size"
        if order.order_type is OrderType.LIMIT and (order.price is None or order.price <= 0
                                                    or order.price % self.tick != 0):
            return "invalid_price"
        return None

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
                           OrderStatus.REJECTED, tracked.filled, max(tracked.request.quantity - tracked.filled, ZERO),
                           ts, "replace_not_supported", tracked.vid)]

    def query(self, client_order_id: str, symbol: str, ts: int) -> None:
        if client_order_id in self._queries_pending:
            return
        self._queries_pending.add(client_order_id)
        self._enqueue("query", client_order_id, symbol)

    def poll(self) -> list:
        events = []
        while self._out:
            events.append(self._out.popleft())
        return events

    def on_tick(self, tick: Tick) -> list:
        return self.poll()

    def on_bar(self, bar: Bar) -> list:
        return self.poll()

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        return [o.request for o in list(self._orders.values())
                if o.status.is_open and (symbol is None or o.request.symbol == symbol)]

    def health(self) -> tuple[str, str | None]:
        down = 0.0 if self._unreachable_since is None else time.monotonic() - self._unreachable_since
        if self._halted or (self._unreachable_since is not None and down >= self.unreachable_halt_s):
            self._halted = True
            return "halt", f"venue_unreachable for {down:.0f} s: {self._unreachable_detail}"
        if self._unreachable_since is not None:
            return "degraded", f"venue_unreachable for {down:.0f} s: {self._unreachable_detail}"
        return "ok", None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if ib_util.getLoop() is not self._loop:
            # ib_async 2.0.1 caches the first event loop it sees (functools.cache on util.getLoop) and sends on
            # it from then on: a process that runs a second loop (a restart of the worker's loop, tests) must
            # drop that cache.  ib_async therefore serves one event loop per process at a time.
            ib_util.getLoop.cache_clear()
        self._wake, self._down, self._io = asyncio.Event(), asyncio.Event(), asyncio.Lock()
        self._started_ns = time.time_ns()
        ib = self.ib
        ib.orderStatusEvent += self._on_status
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        try:
            await self._connect()
        except Exception as exc:  # noqa: BLE001 - one clear line for the operator
            self._loop = None
            raise RuntimeError(f"ib: cannot connect account {self.account!r} to the gateway at "
                               f"{self.host}:{self.port} (client id {self.client_id}): {type(exc).__name__} {exc}"
                               ) from None
        accounts = ib.managedAccounts()
        if self.ib_account and self.ib_account not in accounts:
            ib.disconnect()
            raise ValueError(f"ib: the gateway manages {accounts}, not {self.ib_account!r}")
        self.ib_account = self.ib_account or (accounts[0] if accounts else "")
        if self.sandbox and not self.ib_account.startswith("D"):
            # sandbox = IB's paper account (DU...): a gateway logged into a live account must not be used
            ib.disconnect()
            raise ValueError(f"ib: sandbox mode needs the gateway's paper account (DU...), it is logged into "
                             f"{self.ib_account!r}")
        await self.resync("start")
        self._tasks = [asyncio.create_task(self._sender(), name=f"ib-sender-{self.account}"),
                       asyncio.create_task(self._supervise(), name=f"ib-connection-{self.account}"),
                       asyncio.create_task(self._housekeeping(), name=f"ib-housekeeping-{self.account}")]

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
        self.ib.disconnect()

    async def _connect(self) -> None:
        async with self._io:  # the start-up fetch asks for open orders too
            await self.ib.connectAsync(self.host, self.port, clientId=self.client_id, timeout=self.timeout_s,
                                       account=self.ib_account, fetchFields=STARTUP)
        self._connected = True
        self.connects += 1
        self._down.clear()
        self._mark_reachable()

    async def _supervise(self) -> None:
        """Reconnect with back-off whenever the API socket drops; resync once connected."""
        failures = 0
        while not self._closing:
            if self._connected:
                await self._down.wait()
                continue
            delay = min(self.reconnect_base_s * 2 ** failures, self.reconnect_max_s)
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying
                failures += 1
                self._unreachable_detail = f"reconnect failed: {type(exc).__name__}"
                log.warning("ib: reconnect to %s:%s failed (%s); retrying", self.host, self.port,
                            type(exc).__name__)
                continue
            failures = 0
            log.warning("ib: reconnected to the gateway; resyncing orders and executions")
            await self._restored("reconnect")

    async def _restored(self, cause: str) -> None:
        """The venue answers again: cancel our open orders after a halt, else re-read orders and executions."""
        try:
            if self._halted:
                await self._recover()
            else:
                await self.resync(cause)
        except Exception:  # noqa: BLE001 - the housekeeper tries again
            log.exception("ib: resync (%s) failed", cause)

    def _on_disconnected(self) -> None:
        if self._closing:
            return
        self._connected = False
        metrics.VENUE_WS_RECONNECTS.labels(*self._labels).inc()
        self._mark_unreachable("api_socket_closed")
        # requests written just before the drop may or may not have reached IB: the OMS asks (query)
        for tracked in list(self._orders.values()):
            if tracked.status is OrderStatus.SUBMITTING and tracked.order_id is not None:
                self._emit(tracked, OrderStatus.UNKNOWN, time.time_ns(), "network")
        if self._down is not None:
            self._down.set()

    def _mark_unreachable(self, detail: str) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            log.warning("ib: venue unreachable (%s)", detail)
        self._unreachable_detail = detail

    def _mark_reachable(self) -> None:
        self._unreachable_since = None

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
                    self._send_submit(cid)
                elif kind == "cancel":
                    self._send_cancel(cid)
                else:
                    self._queries_pending.discard(cid)
                    await self._query(cid, symbol)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad request must not stop the sender
                log.exception("ib: %s %s failed unexpectedly", kind, cid)

    def _contract(self, symbol: str) -> Stock:
        base, quote = symbol.split("/")
        return Stock(base, "SMART", quote)

    def _send_submit(self, cid: str) -> None:
        tracked = self._orders[cid]
        req = tracked.request
        if self._halted or not self._connected:
            self._emit(tracked, OrderStatus.REJECTED, time.time_ns(), "venue_unreachable")  # nothing was sent
            return
        action = "BUY" if req.side is Side.BUY else "SELL"
        if req.order_type is OrderType.MARKET:
            order = MarketOrder(action, float(req.quantity), tif="DAY")
        else:
            order = LimitOrder(action, float(req.quantity), float(req.price), tif=TIF.get(req.time_in_force, "GTC"))
        order.orderRef = cid
        order.account = self.ib_account
        try:
            trade = self.ib.placeOrder(self._contract(req.symbol), order)
        except ConnectionError:
            self._emit(tracked, OrderStatus.REJECTED, time.time_ns(), "venue_unreachable")
            return
        tracked.order_id = trade.order.orderId
        tracked.sent_at = time.monotonic()
        self._by_oid[tracked.order_id] = cid

    def _send_cancel(self, cid: str) -> None:
        tracked = self._orders.get(cid)
        if tracked is None or tracked.status in TERMINAL:
            return
        if tracked.order_id is None or not self._connected:
            self.query(cid, tracked.request.symbol, 0)
            return
        trade = next((t for t in self.ib.trades() if t.order.orderId == tracked.order_id
                      and t.order.clientId == self.client_id), None)
        if trade is not None:
            self.ib.cancelOrder(trade.order)
        else:
            self.ib.client.cancelOrder(tracked.order_id)

    # ------------------------------------------------------------------ what IB says (event loop)

    def _cid_of(self, order) -> str | None:
        ref = getattr(order, "orderRef", "") or ""
        if ref in self._orders:
            return ref
        if getattr(order, "clientId", None) == self.client_id:  # orderIds are per API client id
            return self._by_oid.get(getattr(order, "orderId", None))
        return None

    def _on_status(self, trade) -> None:
        cid = self._cid_of(trade.order)
        tracked = self._orders.get(cid) if cid else None
        if tracked is None or tracked.status in TERMINAL:
            return
        st = trade.orderStatus
        if st.permId:
            tracked.perm_id = st.permId
        if trade.order.orderId and tracked.order_id is None and trade.order.clientId == self.client_id:
            tracked.order_id = trade.order.orderId
            self._by_oid[tracked.order_id] = cid
        status = st.status
        now = time.time_ns()
        if status in ("PreSubmitted", "Submitted"):
            self._ack(tracked, now)
            self._behind(tracked, _dec(st.filled))
        elif status == "Filled":
            self._ack(tracked, now)
            self._behind(tracked, _dec(st.filled))
            self._finalize(tracked, OrderStatus.FILLED, now)
        elif status in ("Cancelled", "ApiCancelled", "Inactive"):
            entry = trade.log[-1] if trade.log else None
            code = getattr(entry, "errorCode", 0) or 0
            reason = _reject_reason(code, entry.message) if code and code != 202 else None
            if not tracked.acked and tracked.filled == 0 and _dec(st.filled) == 0 and (
                    reason or status == "Inactive"):
                log.info("ib: order %s rejected (%s): %s", cid, code, entry.message if entry else status)
                self._emit(tracked, OrderStatus.REJECTED, now, reason or "venue_rejected")
                return
            # an order IB had accepted: cancelled (by us, by IB with an error code, or inactive), fills kept
            self._behind(tracked, _dec(st.filled))
            self._finalize(tracked, OrderStatus.CANCELED, now, reason)

    def _on_commission(self, trade, fill, report) -> None:
        self._apply_exec(fill.execution, fill.contract, report)

    def _on_error(self, req_id: int, code: int, text: str, contract=None) -> None:
        if code < 2100 or code >= 2200:  # 2100-2199 are TWS's notices (farm connection OK, ...)
            metrics.VENUE_ERRORS.labels(*self._labels, f"ib_{code}" if code in KNOWN_CODES else "ib_other").inc()
        if code == LOST:
            self._mark_unreachable("ib_connectivity_lost (1100)")
        elif code in RESTORED:
            self._mark_reachable()
            if not self._closing and self._loop is not None:
                self._loop.create_task(self._restored("restored"))
        elif code == 10147:  # the order to cancel is not found: ask what became of it
            cid = self._by_oid.get(req_id)
            if cid:
                self.query(cid, self._orders[cid].request.symbol, 0)

    def _apply_exec(self, execution, contract, report) -> None:
        exec_id = execution.execId
        if not exec_id:
            return
        fill_id = stable_id("fill", self.exchange_name, exec_id)
        if fill_id in self._seen_fills:
            return
        cid = self._cid_of(execution)
        tracked = self._orders.get(cid) if cid else None
        if tracked is None:
            return  # not ours (reconciliation sees it)
        if execution.permId and not tracked.perm_id:
            tracked.perm_id = execution.permId
        self._seen_fills[fill_id] = None
        while len(self._seen_fills) > 200000:
            self._seen_fills.popitem(last=False)
        ts = _ns(execution.time)
        self._newest_exec_ns = max(self._newest_exec_ns, ts)
        self._ack(tracked, ts)
        req = tracked.request
        quantity = _dec(execution.shares)
        commission = report.commission if report is not None and report.commission < 1e300 else 0.0
        currency = (report.currency if report is not None else "") or req.symbol.split("/")[1]
        side = Side.BUY if execution.side == "BOT" else Side.SELL
        liquidity = Liquidity.MAKER if execution.lastLiquidity == 1 else Liquidity.TAKER
        self._out.append(Fill(fill_id, cid, self.account, req.strategy, self.exchange_name, req.symbol, side,
                              _dec(execution.price), quantity, _dec(commission), currency, liquidity, ts))
        tracked.filled += quantity
        tracked.venue_filled = max(tracked.venue_filled, tracked.filled)
        if tracked.filled >= tracked.venue_filled:
            tracked.behind_since = 0.0
        if tracked.final is not None:
            self._settle(tracked)
        else:
            self._emit(tracked, OrderStatus.FILLED if tracked.filled >= req.quantity
                       else OrderStatus.PARTIALLY_FILLED, ts)

    def _behind(self, tracked: _Order, venue_filled: Decimal) -> None:
        tracked.venue_filled = max(tracked.venue_filled, venue_filled)
        if tracked.filled < tracked.venue_filled and not tracked.behind_since:
            tracked.behind_since = time.monotonic()  # fills IB counted, not reported yet: resynced if late

    def _finalize(self, tracked: _Order, status: OrderStatus, ts: int, reason: str | None = None) -> None:
        tracked.final, tracked.final_ts, tracked.final_reason = status, ts, reason
        self._settle(tracked)

    def _settle(self, tracked: _Order) -> None:
        """Report the final status once every fill IB counted has been reported."""
        if tracked.final is None or tracked.status in TERMINAL or tracked.filled < tracked.venue_filled:
            return
        if tracked.final is OrderStatus.FILLED and tracked.filled < tracked.request.quantity:
            return
        self._emit(tracked, tracked.final, tracked.final_ts, tracked.final_reason)

    def _ack(self, tracked: _Order, ts: int) -> None:
        if not tracked.acked:
            self._emit(tracked, OrderStatus.ACKNOWLEDGED, ts)

    def _emit(self, tracked: _Order, status: OrderStatus, ts: int, reason: str | None = None) -> None:
        tracked.status = status
        if status not in (OrderStatus.UNKNOWN, OrderStatus.REJECTED):
            tracked.acked = True
        req = tracked.request
        self._out.append(OrderEvent(req.client_order_id, self.account, req.strategy, req.symbol, status,
                                    tracked.filled, max(req.quantity - tracked.filled, ZERO), ts, reason,
                                    tracked.vid))

    def _remember(self, tracked: _Order) -> None:
        self._orders[tracked.cid] = tracked
        if len(self._orders) > 20000:  # forget the oldest finished orders
            for cid in [c for c, o in list(self._orders.items())[:5000] if o.status in TERMINAL]:
                self._by_oid.pop(self._orders.pop(cid).order_id or -1, None)

    # ------------------------------------------------------------------ resync, query, recovery

    async def _open_trades(self) -> list:
        async with self._io:
            return list(await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.timeout_s))

    async def _executions(self, since_ns: int) -> list:
        """Executions since ``since_ns`` (0: every one TWS keeps), each with its commission report if it came."""
        when = _filter_time(since_ns) if since_ns > 0 else ""
        fills = await asyncio.wait_for(self.ib.reqExecutionsAsync(ExecutionFilter(time=when)), self.timeout_s)
        known = self.ib.wrapper.fills  # a commission report updates the first copy of an execution
        return [known.get(f.execution.execId, f) for f in fills]

    async def resync(self, cause: str) -> None:
        """Open orders (first), then executions since the newest seen; orders of ours gone from the open list are
        settled from their executions."""
        if not self._connected:
            return
        self._last_resync = time.monotonic()
        self.resyncs += 1
        metrics.VENUE_RESYNCS.labels(*self._labels, cause).inc()
        trades = await self._open_trades()
        since = (self._newest_exec_ns or self._started_ns) - int(self.trade_lookback_s * 1e9)
        fills = await self._executions(since)
        open_cids = set()
        for trade in trades:
            cid = self._cid_of(trade.order)
            if cid:
                open_cids.add(cid)
                self._on_status(trade)
        for fill in fills:
            if self._commission_known(fill):
                self._apply_exec(fill.execution, fill.contract, fill.commissionReport)
        gone = [o for o in list(self._orders.values())
                if o.acked and o.status.is_open and o.cid not in open_cids]
        unfilled = [o for o in gone if o.filled < o.request.quantity]
        completed = {t.order.orderRef: t for t in await self._completed_trades()} if unfilled else {}
        for tracked in gone:
            if tracked.cid in completed:
                self._completed(tracked, completed[tracked.cid])
            else:
                self._gone(tracked)
        log.debug("ib: resync (%s): %d open, %d executions", cause, len(trades), len(fills))

    def _commission_known(self, fill) -> bool:
        """A fill is reported with its commission; one whose report has not come after ``commission_wait_s`` is
        reported with fee 0 (its position matters more than its fee)."""
        if fill.commissionReport.execId:
            return True
        if time.time_ns() - _ns(fill.execution.time) < self.commission_wait_s * 1e9:
            return False
        log.warning("ib: execution %s has no commission report after %.0f s; reporting it with fee 0",
                    fill.execution.execId, self.commission_wait_s)
        return True

    def _gone(self, tracked: _Order) -> None:
        """An order IB no longer lists as open: filled if its executions cover it, else cancelled."""
        now = time.time_ns()
        if tracked.filled >= tracked.request.quantity:
            self._finalize(tracked, OrderStatus.FILLED, now)
        else:
            tracked.venue_filled = tracked.filled
            self._finalize(tracked, OrderStatus.CANCELED, now, "not_open_at_venue")

    async def _query(self, cid: str, symbol: str | None) -> None:
        """Our order by client id (orderRef): open orders, then every execution TWS keeps, then completed orders
        (filled / cancelled / rejected ones).  Not known anywhere: REJECTED not_found_at_venue."""
        if not self._connected:
            return  # the OMS asks again
        tracked = self._orders.get(cid)
        trade = next((t for t in await self._open_trades() if t.order.orderRef == cid), None)
        fills = [f for f in await self._executions(0) if f.execution.orderRef == cid]
        done = None
        if trade is None:
            done = next((t for t in reversed(await self._completed_trades()) if t.order.orderRef == cid), None)
        if trade is None and done is None and not fills:
            if tracked is None:
                self._out.append(OrderEvent(cid, self.account, self.strategy_default, symbol or "",
                                            OrderStatus.REJECTED, ZERO, ZERO, time.time_ns(), "not_found_at_venue"))
            elif tracked.status not in TERMINAL and tracked.status is not OrderStatus.SUBMITTING:
                if tracked.acked:
                    self._gone(tracked)
                else:
                    self._emit(tracked, OrderStatus.REJECTED, time.time_ns(), "not_found_at_venue")
            return
        fills = [f for f in fills if self._commission_known(f)]
        if trade is None and done is None and not fills:
            return  # executions whose commission is still on its way: the OMS asks again
        if tracked is None:
            tracked = self._adopt(cid, trade or done, fills)
        if trade is not None:
            if trade.order.clientId == self.client_id and trade.order.orderId:
                tracked.order_id = trade.order.orderId
                self._by_oid[tracked.order_id] = cid
            self._on_status(trade)
        for fill in fills:
            self._apply_exec(fill.execution, fill.contract, fill.commissionReport)
        if trade is None and tracked.status.is_open:
            if done is not None:
                self._completed(tracked, done)
            else:
                self._ack(tracked, time.time_ns())
                self._gone(tracked)

    async def _completed_trades(self) -> list:
        async with self._io:
            return list(await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(True), self.timeout_s))

    def _completed(self, tracked: _Order, done) -> None:
        """The final state of an order from TWS's completed orders."""
        now = time.time_ns()
        status = done.orderStatus.status
        filled = _dec(done.order.filledQuantity) if done.order.filledQuantity < 1e300 else tracked.filled
        if done.order.permId:
            tracked.perm_id = done.order.permId
        if filled > tracked.filled:
            # executions TWS no longer keeps (older than its window): reconciliation books those fills
            log.error("ib: order %s is %s with %s filled at IB, but only %s in executions; not settled here",
                      tracked.cid, status, filled, tracked.filled)
            return
        if status == "Filled":
            self._ack(tracked, now)
            self._finalize(tracked, OrderStatus.FILLED, now)
        elif filled == 0 and not tracked.acked and status == "Inactive":
            self._emit(tracked, OrderStatus.REJECTED, now, "venue_rejected")
        else:
            self._ack(tracked, now)
            tracked.venue_filled = tracked.filled
            self._finalize(tracked, OrderStatus.CANCELED, now, "canceled_at_venue")

    def _adopt(self, cid: str, trade, fills) -> _Order:
        """An order of ours the adapter did not know (asked about after a restart)."""
        if trade is not None:
            c, o = trade.contract, trade.order
            side, qty = (Side.BUY if o.action == "BUY" else Side.SELL), _dec(o.totalQuantity)
            order_type = OrderType.MARKET if o.orderType == "MKT" else OrderType.LIMIT
            price = _dec(o.lmtPrice) if order_type is OrderType.LIMIT else None
        else:
            c = fills[0].contract
            side = Side.BUY if fills[0].execution.side == "BOT" else Side.SELL
            qty = sum((_dec(f.execution.shares) for f in fills), ZERO)
            order_type, price = OrderType.MARKET, None
        request = OrderRequest(cid, self.account, self.strategy_default, self.exchange_name,
                               f"{c.symbol}/{c.currency}", side, order_type, qty, price)
        tracked = _Order(request, status=OrderStatus.UNKNOWN)
        self._remember(tracked)
        return tracked

    async def _housekeeping(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.housekeeping_s)
            try:
                self.health()  # latches the halt once the limit has passed
                if not self._connected:
                    continue
                now = time.monotonic()
                for tracked in list(self._orders.values()):
                    if (tracked.status is OrderStatus.SUBMITTING and tracked.sent_at
                            and now - tracked.sent_at >= self.timeout_s):
                        self._emit(tracked, OrderStatus.UNKNOWN, time.time_ns(), "timeout")
                behind = any(o.behind_since and now - o.behind_since >= self.fill_grace_s and o.status.is_open
                             for o in self._orders.values())
                if behind and now - self._last_resync >= self.fill_grace_s:
                    await self.resync("fills_missing")
                elif now - self._last_resync >= self.resync_s and any(
                        o.acked and o.status.is_open for o in self._orders.values()):
                    await self.resync("periodic")
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watchdog keeps running
                log.exception("ib: housekeeping failed")

    async def _recover(self) -> None:
        """Reconnected after a halt: cancel our open orders, report their final state, then trade again."""
        log.warning("ib: gateway reachable again after a halt; cancelling open orders of %s", self.account)
        for trade in await self._open_trades():
            if self._cid_of(trade.order):
                self.ib.cancelOrder(trade.order)
        await asyncio.sleep(self.housekeeping_s)
        await self.resync("recovered")
        self._halted = False

    # ------------------------------------------------------------------ reconciliation

    async def snapshot(self, since_ns: int) -> VenueSnapshot:
        """Open orders now, executions since ``since_ns`` (IB's execution times are whole seconds: trades of
        the second ``since_ns`` falls in are included), and total balances: cash by currency, shares by stock."""
        ts = time.time_ns()
        open_orders = []
        for trade in await self._open_trades():
            o, c, st = trade.order, trade.contract, trade.orderStatus
            filled = _dec(st.filled)
            status = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACKNOWLEDGED
            open_orders.append(VenueOrder(o.orderRef or None, str(o.permId or st.permId), f"{c.symbol}/{c.currency}",
                                          Side.BUY if o.action == "BUY" else Side.SELL,
                                          OrderType.MARKET if o.orderType == "MKT" else OrderType.LIMIT,
                                          _dec(o.totalQuantity), _dec(o.lmtPrice) if o.orderType == "LMT" else None,
                                          status, filled, ts))
        floor = since_ns - since_ns % 1_000_000_000
        trades = []
        for fill in await self._executions(since_ns):
            ex, c, report = fill.execution, fill.contract, fill.commissionReport
            when = _ns(ex.time)
            if when < floor:
                continue
            commission = report.commission if report.commission < 1e300 else 0.0
            trades.append(VenueTrade(ex.execId, ex.orderRef or None, str(ex.permId), f"{c.symbol}/{c.currency}",
                                     Side.BUY if ex.side == "BOT" else Side.SELL, _dec(ex.price), _dec(ex.shares),
                                     _dec(commission), report.currency or c.currency,
                                     Liquidity.MAKER if ex.lastLiquidity == 1 else Liquidity.TAKER, when))
        balances: dict[str, Decimal] = {}
        for value in self.ib.accountValues(self.ib_account):
            if value.tag == "CashBalance" and value.currency and value.currency != "BASE":
                balances[value.currency] = _dec(value.value)
        positions = await asyncio.wait_for(self.ib.reqPositionsAsync(), self.timeout_s)
        for pos in positions:
            if pos.account == self.ib_account:
                balances[pos.contract.symbol] = _dec(pos.position)
        return VenueSnapshot(ts, open_orders, trades, balances)
