"""A fake TWS / IB Gateway on 127.0.0.1: the subset of the TWS API socket protocol that the real ``ib_async`` client
needs to connect, trade US stocks (Stock contracts on SMART in USD: whole shares, one price tick, no crypto
cash-quantity rules -- the simplest contract in this protocol), and learn about orders, executions, positions and
cash.  The matcher, balances and fault script are tests/fakes/core.py's ``Exchange`` (symbols "AAPL/USD").

Wire format (ib_async/client.py, decoder.py): the client sends ``b"API\\0"`` + a length-prefixed "v157..178"; the
server answers with a length-prefixed "<server version>\\0<time>\\0" (this fake speaks version 157, the lowest
ib_async accepts: the fewest optional fields).  Every later message is a 4-byte big-endian length followed by
NUL-terminated text fields, the first the message id.

Handled (client -> server): 71 startApi (-> 15 managedAccounts, 9 nextValidId), 3 placeOrder, 4 cancelOrder, 5
reqOpenOrders / 16 reqAllOpenOrders (-> 5 openOrder + 3 orderStatus each, 53 openOrderEnd), 6 reqAccountUpdates (->
6 updateAccountValue CashBalance per currency, 7 updatePortfolio, 8 updateAccountTime, 54 accountDownloadEnd; cash
pushed again on every change while subscribed), 7 reqExecutions (-> 11 execDetails + 59 commissionReport each, 55
execDetailsEnd; filtered by clientId / time / symbol / side), 61 reqPositions (-> 61 position, 62 positionEnd), 8
reqIds, 76 reqAccountUpdatesMulti (-> 74 end only), 99 reqCompletedOrders (-> 101 completedOrder each, 102
completedOrdersEnd); others are ignored.

Order events go to the client that placed the order: on acceptance openOrder + orderStatus Submitted; on each fill
execDetails + commissionReport + orderStatus (Submitted with the filled amount, or Filled); on cancel/expiry
orderStatus Cancelled + error 202; a refusal is error 201 "Order rejected - reason:..." with the orderId as reqId.
``orderRef`` is stored and reported back in openOrder and execDetails (the adapter puts its client order id there).

Scripted faults (``fault(kind, ...)`` as in core): "reject" (the next order refused with error 201, param
``reason``), core's "insufficient_balance" / "partial_fill"; ``drop()`` closes every client socket; ``refuse(True)``
stops listening (connections refused) until ``refuse(False)`` listens again on the same port (a gateway down);
"drop_on_place" (the next placeOrder is taken -- param ``accept``: matched or not -- and the socket closed before
any answer: the client cannot know which); ``notify(code, text)`` sends an error message with reqId -1 to every
client (1100 connectivity lost, 1102 restored).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import struct
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.fakes.core import Exchange, Fill, Order, SymbolSpec, VenueError

ACCOUNT = "DU1234567"  # a paper account number
SERVER_VERSION = 157
CON_IDS = {"AAPL": 265598, "MSFT": 272093, "SPY": 756733}


def stock_specs() -> list[SymbolSpec]:
    one, cent = Decimal(1), Decimal("0.01")
    return [SymbolSpec("AAPL", "USD", tick=cent, step=one, min_qty=one, min_notional=cent, price=Decimal("200")),
            SymbolSpec("MSFT", "USD", tick=cent, step=one, min_qty=one, min_notional=cent, price=Decimal("400")),
            SymbolSpec("SPY", "USD", tick=cent, step=one, min_qty=one, min_notional=cent, price=Decimal("600"))]


def _num(value: Decimal | float | int) -> str:
    text = format(Decimal(str(value)).normalize(), "f")
    return text


def _msg(*fields: Any) -> bytes:
    body = "".join(f"{'' if f is None else f}\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


REJECT_TEXT = {
    "insufficient": "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR "
                    "EQUITY WITH LOAN VALUE [0 USD] MUST EXCEED THE INITIAL MARGIN [100 USD]",
    "lot_size": "Order rejected - reason:The order size is not valid",
    "price_filter": "Order rejected - reason:The price does not conform to the minimum price variation",
    "notional": "Order rejected - reason:Order value is too small",
    "bad_symbol": "No security definition has been found for the request",
}


@dataclass
class Session:
    writer: asyncio.StreamWriter
    client_id: int | None = None
    account_updates: bool = False
    order_ids: set = field(default_factory=set)


class FakeIB:
    """The fake gateway on its own thread and event loop.  ``start() -> (host, port)``, ``stop()``."""

    def __init__(self, balances: dict | None = None, account: str = ACCOUNT, commission_rate: str = "0.0005"):
        self.ex = Exchange(stock_specs(), taker_fee=commission_rate, maker_fee=commission_rate, first_order_id=5001)
        self.account = account
        self.ex.add_account(account, "", balances if balances is not None else {"USD": "100000", "AAPL": "0"})
        self.ex.listeners.append(self._on_exchange)
        self.sessions: list[Session] = []
        self.requests: list[tuple] = []  # (message id, client id) of every client message
        self.connections = 0  # connections accepted (handshake done)
        self._ib_ids: dict[tuple[int, int], int] = {}  # (clientId, orderId) -> exchange order id (= permId)
        self._next_valid = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.host, self.port = "127.0.0.1", 0

    # ---- test-side API (any thread) ---------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self._server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            if self._server is not None:
                self._server.close()
            for s in list(self.sessions):
                s.writer.transport.abort()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

        self._thread = threading.Thread(target=run, name="FakeIB", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.host, self.port

    def stop(self) -> None:
        if self.loop and self._thread and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def set_price(self, symbol: str, price: Any) -> None:
        self.ex.set_price(symbol, price)

    def trade(self, symbol: str, price: Any, qty: Any) -> list[Fill]:
        """Someone else trades: resting orders that cross ``price`` fill (at their limit)."""
        return self.ex.print_trade(symbol, price, qty)

    def set_balance(self, asset: str, amount: Any) -> None:
        self.ex.set_balance(asset, amount, account=self.account)

    def fault(self, kind: str, count: int | None = 1, duration: float | None = None, **params) -> None:
        self.ex.fault(kind, count, duration, **params)

    def cancel_by_ref(self, order_ref: str) -> None:
        """The venue cancels an order on its own (e.g. end of day)."""
        order = next(o for o in self.ex.orders.values() if o.meta.get("order_ref") == order_ref)
        self.ex.cancel(self.account, None, order_id=order.order_id)

    def drop(self) -> None:
        """Close every client socket (the client sees the peer close)."""
        self._in_loop(lambda: [s.writer.transport.abort() for s in list(self.sessions)])

    def refuse(self, on: bool) -> None:
        """While on, nothing listens on the port (connections are refused: the gateway is down)."""
        done = threading.Event()

        async def flip():
            try:
                if on and self._server is not None:
                    self._server.close()
                    self._server = None
                elif not on and self._server is None:
                    self._server = await asyncio.start_server(self._serve, self.host, self.port)
            finally:
                done.set()
        self._in_loop(lambda: asyncio.ensure_future(flip()))
        done.wait(5)

    def notify(self, code: int, text: str) -> None:
        self._in_loop(lambda: [self._send(s, _msg(4, 2, -1, code, text)) for s in list(self.sessions)])

    def clients(self) -> int:
        return sum(1 for s in self.sessions if s.client_id is not None)

    def orders(self) -> dict[str, dict]:
        """The venue's orders by orderRef."""
        with self.ex.lock:
            return {o.meta.get("order_ref") or o.client_order_id: {**o.to_json(), **o.meta}
                    for o in self.ex.orders.values()}

    def fills(self) -> list[dict]:
        with self.ex.lock:
            return [f.to_json() for f in self.ex.fills]

    def placed(self, order_ref: str) -> int:
        """How many orders carried this orderRef (an order must never be sent twice)."""
        with self.ex.lock:
            return sum(1 for o in self.ex.orders.values() if o.meta.get("order_ref") == order_ref)

    def balances(self) -> dict[str, Decimal]:
        with self.ex.lock:
            return {a: v[0] + v[1] for a, v in self.ex.account(self.account).balances.items()}

    # ---- server loop ----------------------------------------------------------------------------------------
    def _in_loop(self, fn) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn)

    def _send(self, session: Session, data: bytes) -> None:
        if not session.writer.is_closing():
            session.writer.write(data)

    def _push(self, client_id: int | None, data: bytes) -> None:
        """From any thread, in order: to the sessions of ``client_id``."""
        def deliver():
            for s in list(self.sessions):
                if s.client_id is not None and s.client_id == client_id:
                    self._send(s, data)
        self._in_loop(deliver)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer)
        try:
            head = await reader.readexactly(4)
            if head != b"API\0":
                return
            await self._read(reader)  # "v157..178"
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d %H:%M:%S")
            writer.write(_msg(SERVER_VERSION, f"{now} UTC"))
            self.sessions.append(session)
            self.connections += 1
            while True:
                fields = await self._read(reader)
                self.requests.append((fields[0], session.client_id))
                try:
                    self._handle(session, fields)
                except Exception as exc:  # noqa: BLE001 - a bad message is answered, the server goes on
                    self._send(session, _msg(4, 2, -1, 320, f"fake: cannot handle {fields[:2]}: {exc}"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if session in self.sessions:
                self.sessions.remove(session)
            writer.transport.abort()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> list[str]:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        text = (await reader.readexactly(size)).decode()
        return text.split("\0")[:-1]

    def _handle(self, s: Session, f: list[str]) -> None:
        mid = int(f[0])
        if mid == 71:  # startApi: version, clientId, optional capabilities
            s.client_id = int(f[2])
            self._send(s, _msg(15, 1, self.account))
            self._send(s, _msg(9, 1, self._next_id(s.client_id)))
        elif mid == 8:
            self._send(s, _msg(9, 1, self._next_id(s.client_id)))
        elif mid == 3:
            self._place(s, f)
        elif mid == 4:
            self._cancel(s, int(f[2]))
        elif mid in (5, 16):  # reqOpenOrders (this client's), reqAllOpenOrders (every API client's)
            with self.ex.lock:
                for order in self.ex.open_orders(self.account):
                    if "ib_order_id" in order.meta and (mid == 16 or order.meta.get("client_id") == s.client_id):
                        self._send(s, self._open_order(order))
                        self._send(s, self._status(order))
            self._send(s, _msg(53, 1))
        elif mid == 76:  # reqAccountUpdatesMulti: nothing per model (the account's values come from 6)
            self._send(s, _msg(74, 1, f[2]))
        elif mid == 99:  # reqCompletedOrders: API orders no longer working (filled, cancelled, rejected)
            with self.ex.lock:
                for order in self.ex.orders.values():
                    if "ib_order_id" in order.meta and not order.is_open:
                        self._send(s, self._completed_order(order))
            self._send(s, _msg(102))
        elif mid == 6:
            s.account_updates = f[2] == "1"
            if s.account_updates:
                self._account_download(s)
        elif mid == 7:
            self._executions(s, f)
        elif mid == 61:
            with self.ex.lock:
                for asset, (free, locked) in self.ex.account(self.account).balances.items():
                    if asset in CON_IDS:
                        self._send(s, _msg(61, 3, self.account, *self._contract(asset, exchange="SMART"),
                                           _num(free + locked), "0"))
            self._send(s, _msg(62, 1))
        # anything else (market data, completed orders, ...) is not part of this fake

    def _next_id(self, client_id: int | None) -> int:
        used = [oid for (cid, oid) in self._ib_ids if cid == client_id]
        return max(used, default=0) + 1

    # ---- messages -------------------------------------------------------------------------------------------
    @staticmethod
    def _contract(base: str, exchange: str = "SMART") -> list:
        # conId symbol secType lastTradeDate strike right multiplier exchange currency localSymbol tradingClass
        return [CON_IDS.get(base, 0), base, "STK", "", "0", "", "", exchange, "USD", base, "NMS"]

    def _open_order(self, o: Order) -> bytes:
        base = o.symbol.split("/")[0]
        order_type = "MKT" if o.type == "MARKET" else "LMT"
        status = {"NEW": "Submitted", "PARTIALLY_FILLED": "Submitted", "FILLED": "Filled"}.get(o.status, "Cancelled")
        fields: list = [5, o.meta["ib_order_id"], *self._contract(base), o.side, _num(o.qty), order_type,
                        _num(o.price) if o.price is not None else "", "", o.meta.get("tif") or "DAY", "",
                        self.account, "O", 0, o.meta.get("order_ref", ""), o.meta["client_id"], o.order_id, 0, 0, 0,
                        "", "", "", "", "", ""]  # ... goodAfterTime, (skipped), faGroup, faMethod, faPct, faProfile
        fields += [""] * 29  # modelCode .. deltaNeutralAuxPrice (deltaNeutralOrderType empty)
        fields += ["", "", "", "", "", "", ""]  # continuousUpdate .. comboLegsDescrip
        fields += [0, 0, 0]  # combo legs, order combo legs, smart routing params
        fields += ["", "", ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        fields += [""]  # hedgeType
        fields += ["", "", "", 0, 0]  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, dncPresent
        fields += [""]  # algoStrategy
        fields += [0, 0, status] + [""] * 9 + ["", "", "", "", "", 0, 0]  # solicited, whatIf, state ..., randomize
        fields += [0]  # conditions
        fields += [""] * 16  # adjustedOrderType .. usePriceMgmtAlgo
        return _msg(*fields)

    def _completed_order(self, o: Order) -> bytes:
        base = o.symbol.split("/")[0]
        status = "Filled" if o.status == "FILLED" else "Cancelled"
        fields: list = [101, *self._contract(base), o.side, _num(o.qty), "MKT" if o.type == "MARKET" else "LMT",
                        _num(o.price) if o.price is not None else "", "", o.meta.get("tif") or "DAY", "",
                        self.account, "O", 0, o.meta.get("order_ref", ""), o.order_id, 0, 0, 0, "", "", "", "", ""]
        fields += [""] * 23  # modelCode .. deltaNeutralAuxPrice
        fields += ["", "", "", "", ""]  # continuousUpdate .. comboLegsDescrip
        fields += [0, 0, 0, "", "", "", ""]  # legs, order legs, routing params, scale x3, hedgeType
        fields += ["", "", "", 0, ""]  # clearingAccount, clearingIntent, notHeld, dncPresent, algoStrategy
        fields += [0, status, 0, 0, 0]  # solicited, status, randomizeSize, randomizePrice, conditions
        fields += ["", "", "", "", "", "", _num(o.executed), "", "", "", "", "", "",
                   time.strftime("%Y%m%d %H:%M:%S", time.gmtime(o.updated / 1000)), status]
        return _msg(*fields)

    def _status(self, o: Order) -> bytes:
        status = {"NEW": "Submitted", "PARTIALLY_FILLED": "Submitted", "FILLED": "Filled"}.get(o.status, "Cancelled")
        avg = o.cum_quote / o.executed if o.executed else Decimal(0)
        # orderId status filled remaining avgFillPrice permId parentId lastFillPrice clientId whyHeld mktCapPrice
        return _msg(3, o.meta["ib_order_id"], status, _num(o.executed), _num(o.remaining), _num(avg), o.order_id,
                    0, _num(avg), o.meta["client_id"], "", 0)

    def _exec_messages(self, fill: Fill, order: Order, req_id: int = -1) -> bytes:
        base = fill.symbol.split("/")[0]
        exec_id = self.exec_id(fill)
        cum = sum((f.qty for f in self.ex.fills if f.order_id == order.order_id and f.trade_id <= fill.trade_id),
                  Decimal(0))
        details = _msg(11, req_id, order.meta["ib_order_id"], *self._contract(base), exec_id, fill.time // 1000,
                       self.account, "ISLAND", "BOT" if fill.side == "BUY" else "SLD", _num(fill.qty),
                       _num(fill.price), order.order_id, order.meta["client_id"], 0, _num(cum), _num(fill.price),
                       order.meta.get("order_ref", ""), "", "", "", 1 if fill.is_maker else 2)  # 1 added, 2 removed
        report = _msg(59, 1, exec_id, _num(fill.commission), fill.commission_asset, "", "", "")
        return details + report

    @staticmethod
    def exec_id(fill: Fill) -> str:
        return f"0000e0d5.{fill.trade_id:08x}.01.01"

    # ---- requests ---------------------------------------------------------------------------------------------
    def _place(self, s: Session, f: list[str]) -> None:
        oid = int(f[1])
        symbol, sec_type, currency = f[3], f[4], f[11]
        action, qty, order_type, lmt, tif, order_ref = f[16], f[17], f[18], f[19], f[21], f[26]
        if (s.client_id, oid) in self._ib_ids:
            self._send(s, _msg(4, 2, oid, 103, "Duplicate order id"))
            return
        if sec_type != "STK" or f"{symbol}/{currency}" not in self.ex.specs:
            self._send(s, _msg(4, 2, oid, 200, REJECT_TEXT["bad_symbol"]))
            return
        dropped = self.ex.active_fault(("drop_on_place",))
        if dropped is not None:
            s.writer.transport.abort()  # events of the order (if taken) find no session: lost with the socket
            if not dropped.params.get("accept", True):
                return
        fault = self.ex.active_fault(("reject",))
        if fault:
            self._send(s, _msg(4, 2, oid, 201, "Order rejected - reason:" + fault.params.get("reason", "rejected")))
            return
        type_ = {"MKT": "MARKET", "LMT": "LIMIT"}.get(order_type)
        if type_ is None:
            self._send(s, _msg(4, 2, oid, 387, f"Unsupported order type {order_type}"))
            return
        meta = {"ib_order_id": oid, "client_id": s.client_id, "order_ref": order_ref, "tif": tif}
        with self.ex.lock:
            try:
                self.ex.place(self.account, f"{symbol}/{currency}", action, type_, qty=qty,
                              price=lmt if type_ == "LIMIT" else None, tif=None if type_ == "MARKET" else "GTC",
                              client_order_id=f"ib{s.client_id}-{oid}", meta=meta)
            except VenueError as exc:
                text = REJECT_TEXT.get(exc.kind, f"Order rejected - reason:{exc}")
                self._send(s, _msg(4, 2, oid, 201, text))

    def _cancel(self, s: Session, oid: int) -> None:
        xid = self._ib_ids.get((s.client_id, oid))
        try:
            if xid is None:
                raise VenueError("unknown_order")
            self.ex.cancel(self.account, None, order_id=xid)
        except VenueError:
            self._send(s, _msg(4, 2, oid, 10147, f"OrderId {oid} that needs to be cancelled is not found."))

    def _executions(self, s: Session, f: list[str]) -> None:
        req_id, client_id, _acct, since, symbol, _sec, _exch, side = f[2:10]
        since_ms = _parse_time(since) if since else 0
        with self.ex.lock:
            by_id = self.ex.orders
            for fill in self.ex.fills:
                order = by_id[fill.order_id]
                if client_id and int(client_id) and order.meta.get("client_id") != int(client_id):
                    continue
                if fill.time < since_ms or (symbol and fill.symbol.split("/")[0] != symbol):
                    continue
                if side and {"BUY": "BOT", "SELL": "SLD"}[fill.side] != side and fill.side != side:
                    continue
                self._send(s, self._exec_messages(fill, order, int(req_id)))
        self._send(s, _msg(55, 1, req_id))

    def _account_download(self, s: Session) -> None:
        with self.ex.lock:
            for asset, (free, locked) in self.ex.account(self.account).balances.items():
                if asset in CON_IDS:
                    if free + locked:
                        self._send(s, _msg(7, 8, *self._contract(asset)[:7], "", "USD", asset, "NMS",
                                           _num(free + locked), 0, 0, 0, 0, 0, self.account))
                else:
                    self._send(s, _msg(6, 2, "CashBalance", _num(free + locked), asset, self.account))
        self._send(s, _msg(8, 1, time.strftime("%H:%M")))
        self._send(s, _msg(54, 1, self.account))

    # ---- exchange events (called under the exchange lock, from any thread) ------------------------------------
    def _on_exchange(self, event: str, account: str, payload: dict) -> None:
        if event == "balance":
            assets = payload.get("assets") or []
            bal = self.ex.account(account).balances

            def deliver(rows=[(a, sum(bal.get(a, [0, 0]), Decimal(0))) for a in assets if a not in CON_IDS]):
                for s in list(self.sessions):
                    if s.account_updates:
                        for asset, total in rows:
                            self._send(s, _msg(6, 2, "CashBalance", _num(total), asset, self.account))
            self._in_loop(deliver)
            return
        order: Order = payload["order"]
        meta = order.meta
        if "ib_order_id" not in meta:  # placed by the test through core: an order of no API client
            return
        self._ib_ids[(meta["client_id"], meta["ib_order_id"])] = order.order_id
        kind = payload["exec_type"]
        if kind == "NEW":
            self._push(meta["client_id"], self._open_order(order) + self._status(order))
        elif kind == "TRADE":
            self._push(meta["client_id"], self._exec_messages(payload["fill"], order) + self._status(order))
        else:  # CANCELED / EXPIRED
            self._push(meta["client_id"], self._status(order) + _msg(4, 2, meta["ib_order_id"], 202,
                                                                     "Order Canceled - reason:"))


def _parse_time(text: str) -> int:
    """An execution filter's time, "yyyymmdd-hh:mm:ss" (UTC) or "yyyymmdd hh:mm:ss [UTC]", in ms."""
    text = text.strip()
    if "-" in text[:9]:
        day, clock = text.split("-", 1)
    else:
        day, clock = text.split(" ")[:2]
    stamp = dt.datetime.strptime(day + clock[:8], "%Y%m%d%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return int(stamp.timestamp() * 1000)
