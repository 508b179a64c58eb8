"""A price-time priority matching engine over integer ticks and lots, usable on its own.

Prices are integer ticks and quantities integer lots (the venue converts Decimals at its edge) so the hot
loop does no Decimal arithmetic.  Each side is a dict price -> level (a FIFO deque) plus a heap of prices
for the best level; cancels are O(1): the order is zeroed in place and skipped when it reaches the front
("lazy deletion"), and levels/heap entries left empty are dropped when met.

Order ids are any hashable.  ``add`` and ``amend`` return ``(code, trades, canceled)``:

* ``code`` -- what happened to the order itself: RESTED (resting, maybe after partial fills), FILLED,
  CANCELED (market / IOC remainder dropped, or nothing to match), REJECTED_POST_ONLY, REJECTED_FOK,
  STOP_PENDING (stop order waiting for its trigger);
* ``trades`` -- ``(maker_id, taker_id, price, qty)`` tuples in execution order, including trades of stop
  orders triggered by this call (their taker id is the stop's id);
* ``canceled`` -- ``(id, code)`` of triggered stop orders whose remainder was dropped (market / IOC / FOK /
  self trade).

Self-trade prevention: orders may carry an ``owner``; a taker that reaches a resting order of the same
owner stops there and its remainder is dropped (code SELF_TRADE), the resting order is untouched.

Stops trigger on the last trade price (of this book, or given to ``set_last_price`` by a data feed): a buy
stop when last >= stop, a sell stop when last <= stop; a stop whose trigger is already met when it arrives
triggers at once.  Triggered stops run in (stop price, arrival) priority.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush

GTC = "gtc"
IOC = "ioc"
FOK = "fok"

RESTED = "rested"
FILLED = "filled"
CANCELED = "canceled"
REJECTED_POST_ONLY = "post_only_would_cross"
REJECTED_FOK = "fok_not_fillable"
STOP_PENDING = "stop_pending"
SELF_TRADE = "self_trade_prevented"

_INF = float("inf")
_NO_CANCELS: tuple = ()


class BookError(ValueError):
    """Bad input to the matching engine."""


class DuplicateOrderIdError(BookError):
    pass


class UnknownOrderIdError(BookError):
    pass


class _Order:
    __slots__ = ("id", "is_buy", "price", "qty", "tif", "post_only", "stop", "seq", "owner")

    def __init__(self, order_id, is_buy, price, qty, tif, post_only, stop, seq, owner):
        self.id = order_id
        self.is_buy = is_buy
        self.price = price  # None for a market order
        self.qty = qty  # remaining lots; 0 once canceled or filled
        self.tif = tif
        self.post_only = post_only
        self.stop = stop  # stop price while untriggered, else None
        self.seq = seq
        self.owner = owner  # orders of one owner never trade with each other


class _Level:
    __slots__ = ("qty", "queue", "dead")

    def __init__(self):
        self.qty = 0  # live lots at this price
        self.queue = deque()
        self.dead = 0  # canceled orders still sitting in the queue


class OrderBook:
    """One symbol's limit order book with price-time priority, stops, IOC/FOK/post-only and amend."""

    __slots__ = ("_bids", "_asks", "_bid_heap", "_ask_heap", "_orders", "_buy_stops", "_sell_stops", "_seq", "last_price")

    def __init__(self) -> None:
        self._bids: dict[int, _Level] = {}
        self._asks: dict[int, _Level] = {}
        self._bid_heap: list[int] = []  # negated prices: heap top is the best bid
        self._ask_heap: list[int] = []
        self._orders: dict = {}  # id -> resting or untriggered stop order
        self._buy_stops: list = []  # (stop, seq, order)
        self._sell_stops: list = []  # (-stop, seq, order)
        self._seq = 0
        self.last_price: int | None = None

    # ------------------------------------------------------------------ commands

    def add(self, order_id, is_buy: bool, qty: int, price: int | None = None, tif: str = GTC,
            post_only: bool = False, stop: int | None = None, owner=None):
        """Add an order; ``price=None`` is a market order, ``stop`` makes it a stop(-limit) order."""
        if order_id in self._orders:
            raise DuplicateOrderIdError(f"order id {order_id!r} is already open in this book")
        if type(qty) is not int or qty <= 0:
            raise BookError(f"qty must be a positive int of lots, got {qty!r}")
        if price is not None and (type(price) is not int or price <= 0):
            raise BookError(f"price must be a positive int of ticks or None, got {price!r}")
        if post_only and (price is None or tif != GTC):
            raise BookError("post_only needs a GTC limit order")
        self._seq += 1
        o = _Order(order_id, is_buy, price, qty, tif, post_only, None, self._seq, owner)
        if stop is not None:
            if type(stop) is not int or stop <= 0:
                raise BookError(f"stop must be a positive int of ticks, got {stop!r}")
            last = self.last_price
            if last is None or (last < stop if is_buy else last > stop):
                o.stop = stop
                self._orders[order_id] = o
                heappush(self._buy_stops if is_buy else self._sell_stops, (stop if is_buy else -stop, o.seq, o))
                return STOP_PENDING, [], _NO_CANCELS
        trades: list = []
        code = self._execute(o, trades)
        if trades and (self._buy_stops or self._sell_stops):
            return code, trades, self._run_stops(trades)
        return code, trades, _NO_CANCELS

    def cancel(self, order_id) -> int:
        """Cancel an open order; returns the lots that were still open."""
        o = self._orders.pop(order_id, None)
        if o is None:
            raise UnknownOrderIdError(f"order id {order_id!r} is not open in this book")
        qty = o.qty
        o.qty = 0
        if o.stop is None:
            self._unlink(o, qty)
        return qty

    def amend(self, order_id, qty: int | None = None, price: int | None = None):
        """Change size and/or price.  Decreasing size keeps queue priority; a price change or a size
        increase is a cancel + new order (back of the queue, may match).  A post-only amend that would
        cross is refused and the order left as it was."""
        o = self._orders.get(order_id)
        if o is None:
            raise UnknownOrderIdError(f"order id {order_id!r} is not open in this book")
        new_qty = o.qty if qty is None else qty
        new_price = o.price if price is None else price
        if type(new_qty) is not int or new_qty <= 0:
            raise BookError(f"qty must be a positive int of lots, got {new_qty!r}")
        if new_price is not None and (type(new_price) is not int or new_price <= 0):
            raise BookError(f"price must be a positive int of ticks, got {new_price!r}")
        if o.stop is None and new_price == o.price and new_qty <= o.qty:
            self._levels(o.is_buy)[o.price].qty -= o.qty - new_qty
            o.qty = new_qty
            return RESTED, [], _NO_CANCELS
        if o.post_only and self._crosses(o.is_buy, new_price):
            return REJECTED_POST_ONLY, [], _NO_CANCELS
        stop = o.stop
        self.cancel(order_id)
        return self.add(order_id, o.is_buy, new_qty, new_price, o.tif, o.post_only, stop, o.owner)

    def set_last_price(self, price: int):
        """Tell the book the market's last trade price (triggers stops); returns (trades, canceled)."""
        self.last_price = price
        trades: list = []
        return trades, self._run_stops(trades)

    # ------------------------------------------------------------------ queries

    def __contains__(self, order_id) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def remaining(self, order_id) -> int:
        o = self._orders.get(order_id)
        return 0 if o is None else o.qty

    def best_bid(self) -> int | None:
        k = self._top(self._bid_heap, self._bids, -1)
        return None if k is None else -k

    def best_ask(self) -> int | None:
        return self._top(self._ask_heap, self._asks, 1)

    def depth(self, is_buy: bool, n: int | None = None) -> list[tuple[int, int]]:
        """(price, lots) of one side, best first."""
        levels = self._bids if is_buy else self._asks
        prices = sorted(levels, reverse=is_buy)[:n]
        return [(p, levels[p].qty) for p in prices]

    def level_orders(self, is_buy: bool, price: int) -> list[tuple[object, int]]:
        """(id, lots) of the orders at one price, in time priority."""
        level = (self._bids if is_buy else self._asks).get(price)
        return [] if level is None else [(o.id, o.qty) for o in level.queue if o.qty]

    # ------------------------------------------------------------------ internals

    def _levels(self, is_buy: bool) -> dict[int, _Level]:
        return self._bids if is_buy else self._asks

    @staticmethod
    def _top(heap: list[int], levels: dict[int, _Level], sign: int) -> int | None:
        """Heap key of the best live level (negated price for bids), dropping stale entries."""
        while heap:
            k = heap[0]
            if (k * sign) in levels:
                return k
            heappop(heap)
        return None

    def _crosses(self, is_buy: bool, price: int | None) -> bool:
        if is_buy:
            best = self.best_ask()
            return best is not None and (price is None or best <= price)
        best = self.best_bid()
        return best is not None and (price is None or best >= price)

    def is_resting(self, order_id) -> bool:
        """Open and in the book (an untriggered stop is open but not resting)."""
        o = self._orders.get(order_id)
        return o is not None and o.stop is None

    def _available(self, o: _Order) -> int:
        """Opposite-side lots an order could take within its limit (for FOK)."""
        if o.owner is not None:
            return self._available_before_own(o)
        total = 0
        if o.is_buy:
            lim = _INF if o.price is None else o.price
            for p, level in self._asks.items():
                if p <= lim:
                    total += level.qty
        else:
            lim = 0 if o.price is None else o.price
            for p, level in self._bids.items():
                if p >= lim:
                    total += level.qty
        return total

    def _available_before_own(self, o: _Order) -> int:
        """Like _available, but stopping at the first resting order of the same owner (self-trade)."""
        levels = self._asks if o.is_buy else self._bids
        total = 0
        for p in sorted(levels, reverse=not o.is_buy):
            if o.price is not None and (p > o.price if o.is_buy else p < o.price):
                break
            for m in levels[p].queue:
                if m.qty:
                    if m.owner == o.owner:
                        return total
                    total += m.qty
        return total

    def _execute(self, o: _Order, trades: list) -> str:
        if o.post_only and self._crosses(o.is_buy, o.price):
            return REJECTED_POST_ONLY
        if o.tif == FOK and self._available(o) < o.qty:
            return REJECTED_FOK
        if self._match(o, trades):
            o.qty = 0
            return SELF_TRADE
        if o.qty == 0:
            return FILLED
        if o.price is None or o.tif != GTC:
            o.qty = 0
            return CANCELED
        self._rest(o)
        return RESTED

    def _match(self, o: _Order, trades: list) -> bool:
        """Match a taker against the opposite side; True if it stopped at an order of its own owner."""
        # Heap keys: asks store +price, bids store -price, so "best first" is a min-heap on both sides and
        # the taker's limit becomes the bound ``key <= bound``.
        if o.is_buy:
            levels, heap, sign = self._asks, self._ask_heap, 1
            bound = _INF if o.price is None else o.price
        else:
            levels, heap, sign = self._bids, self._bid_heap, -1
            bound = _INF if o.price is None else -o.price
        remaining = o.qty
        taker = o.id
        owner = o.owner
        self_trade = False
        orders = self._orders
        append = trades.append
        while remaining and heap:
            k = heap[0]
            if k > bound:
                break
            price = k * sign
            level = levels.get(price)
            if level is None:
                heappop(heap)  # stale entry of a level emptied by cancels
                continue
            queue = level.queue
            while remaining and queue:
                m = queue[0]
                mq = m.qty
                if mq == 0:
                    queue.popleft()
                    level.dead -= 1
                    continue
                if owner is not None and m.owner == owner:
                    self_trade = True
                    break
                if mq <= remaining:
                    remaining -= mq
                    level.qty -= mq
                    m.qty = 0
                    queue.popleft()
                    del orders[m.id]
                    append((m.id, taker, price, mq))
                else:
                    m.qty = mq - remaining
                    level.qty -= remaining
                    append((m.id, taker, price, remaining))
                    remaining = 0
            if level.qty == 0:
                del levels[price]
                heappop(heap)
            if trades and trades[-1][2] == price:
                self.last_price = price
            if self_trade:
                break
        o.qty = remaining
        return self_trade

    def _rest(self, o: _Order) -> None:
        if o.is_buy:
            levels, heap, key = self._bids, self._bid_heap, -o.price
        else:
            levels, heap, key = self._asks, self._ask_heap, o.price
        level = levels.get(o.price)
        if level is None:
            level = levels[o.price] = _Level()
            heappush(heap, key)
        level.queue.append(o)
        level.qty += o.qty
        self._orders[o.id] = o

    def _unlink(self, o: _Order, qty: int) -> None:
        """Remove a canceled resting order's lots from its level (the object stays queued, zeroed)."""
        levels = self._bids if o.is_buy else self._asks
        level = levels[o.price]
        level.qty -= qty
        if level.qty == 0:
            del levels[o.price]
            heap = self._bid_heap if o.is_buy else self._ask_heap
            if len(heap) > 2 * len(levels) + 64:  # too many stale entries: rebuild
                heap[:] = [-p for p in levels] if o.is_buy else list(levels)
                heapify(heap)
            return
        level.dead += 1
        if level.dead > 32 and 2 * level.dead > len(level.queue):  # mostly dead: compact
            level.queue = deque(x for x in level.queue if x.qty)
            level.dead = 0

    def _run_stops(self, trades: list) -> list:
        """Trigger stops on the last price until none is left to trigger; returns ids whose remainder dropped."""
        canceled: list = []
        buy_stops, sell_stops, orders = self._buy_stops, self._sell_stops, self._orders
        while True:
            last = self.last_price
            if last is None:
                return canceled
            o = None
            while buy_stops:
                stop, _, cand = buy_stops[0]
                if cand.qty == 0 or cand.stop is None:
                    heappop(buy_stops)  # canceled / amended away
                    continue
                if stop <= last:
                    heappop(buy_stops)
                    o = cand
                break
            if o is None:
                while sell_stops:
                    neg_stop, _, cand = sell_stops[0]
                    if cand.qty == 0 or cand.stop is None:
                        heappop(sell_stops)
                        continue
                    if -neg_stop >= last:
                        heappop(sell_stops)
                        o = cand
                    break
            if o is None:
                return canceled
            del orders[o.id]
            o.stop = None
            code = self._execute(o, trades)
            if code is not RESTED and code is not FILLED:
                canceled.append((o.id, code))
