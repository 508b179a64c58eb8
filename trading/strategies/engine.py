"""The strategy engine: strategies + sizing + (optional) risk checks + a venue + the portfolio.

One engine serves the live stream (``on_bars`` / ``on_tick`` one event at a time) and the
backtester (the same ``on_bars``, or ``run_fast`` which takes a whole chunk of one symbol's bars at
once).  Both paths share every order decision (``_act``) and every venue event (``apply``); they
differ only in where the targets come from and in skipping bars at which nothing can happen, which is
why they produce identical fills.

Its collaborators are the ports of ``trading.ports``: an ExecutionVenue, a Ledger, an optional
RiskGate and Clock.  Orders decided outside the strategies (an operator's or the risk engine's
flatten) go through the public ``submit_approved`` / ``cancel``; venue reports that arrive outside
``on_bars``/``on_tick`` go through ``apply``.

Per timestamp the order is fixed: (1) the venue sees the bars (fills of earlier orders), (2) the
portfolio is marked at the closes, (3) strategies see the bars and their targets become orders,
stamped at the bar's close time.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from trading.indicators import RollingVolatility
from trading.marketdata.timeframes import interval_ns
from trading.ports import Clock, ExecutionVenue, Ledger, RiskGate
from trading.records import Bar, Fill, Instrument, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, Tick, stable_id
from trading.sizing import FixedFraction, Sizer, round_to_lot, to_decimal
from trading.strategies.base import Strategy, StrategyError, TargetPosition


def make_bar(exchange: str, symbol: str, interval: str, ts: int, o: float, h: float, lo: float, c: float, v: float) -> Bar:
    """A Bar from floats, with the same exact Decimal conversion everywhere (backtest and stream tests)."""
    return Bar(exchange, symbol, interval, int(ts), int(ts), _dec(o), _dec(h), _dec(lo), _dec(c), _dec(v))


def _dec(x: float) -> Decimal:
    """Shortest decimal that round-trips to the float (numpy scalars included)."""
    return Decimal(repr(float(x)))


@dataclass
class _Open:
    slot: str
    symbol: str
    sign: int
    remaining: Decimal


class _Ctx:
    """The Context handed to strategies (see trading.strategies.base.Context)."""

    def __init__(self, engine: "StrategyEngine") -> None:
        self._e = engine
        self.slot = ""
        self.ts = 0

    def position(self, symbol: str) -> Decimal:
        return self._e.position(symbol, self.slot)

    def price(self, symbol: str) -> Decimal | None:
        return self._e.last_price.get(symbol)

    def equity(self) -> Decimal:
        return self._e.portfolio.equity()

    def symbols(self) -> list[str]:
        return sorted(self._e.last_price)


class StrategyEngine:
    """Runs named strategy slots against one account.  ``slot`` names are the ``strategy`` field of
    orders and fills, so positions and P&L are attributed per slot and survive a strategy swap.
    """

    def __init__(
        self,
        venue: ExecutionVenue,
        portfolio: Ledger,
        strategies: Strategy | Mapping[str, Strategy],
        *,
        account: str,
        exchange: str = "sim",
        instruments: Mapping[str, Instrument] | None = None,
        sizer: Sizer | None = None,
        risk: RiskGate | None = None,
        history: int = 0,
        trade_from_ts: int | None = None,
        clock: Clock | None = None,
        keep_fills: bool = True,
    ) -> None:
        """``keep_fills``: keep every fill in ``fills`` (a backtest's result); a 24/7 worker passes False
        (its fills are in its system of record) so memory does not grow with them."""
        if isinstance(strategies, Strategy):
            strategies = {strategies.name: strategies}
        if not strategies:
            raise StrategyError("the engine needs at least one strategy")
        self.venue, self.portfolio, self.risk = venue, portfolio, risk
        self.slots: dict[str, Strategy] = dict(strategies)
        self.account, self.exchange = account, exchange
        self.instruments = dict(instruments or {})
        self.sizer: Sizer = sizer or FixedFraction(1.0)
        self.trade_from_ts = trade_from_ts
        self.clock = clock  # simulated time for the risk gate, set to each event's time
        self.keep_fills = keep_fills
        self.last_price: dict[str, Decimal] = {}
        self.rejected: Counter[str] = Counter()
        self.fills: list[Fill] = []
        # each slot's sizer, resolved when the slot is created or swapped (not per order)
        self._sizers: dict[str, Sizer] = {slot: s.sizer or self.sizer for slot, s in self.slots.items()}
        self.n_orders = 0
        self._open: dict[str, _Open] = {}
        self._vol: dict[str, RollingVolatility] = {}
        self._vol_now: dict[str, float | None] = {}
        self._ctx = _Ctx(self)
        self._ts_seq: tuple[int, Counter[tuple[str, str]]] = (-1, Counter())
        self._deferred: dict[tuple[str, str], float] = {}  # targets decided while not trading yet
        self._history: deque[list[Bar]] = deque(maxlen=max(0, history))

    # -- queries ------------------------------------------------------------------------------
    def position(self, symbol: str, slot: str | None = None) -> Decimal:
        return self.portfolio.position(symbol, slot).quantity

    def pending(self, slot: str, symbol: str) -> Decimal:
        return sum((o.sign * o.remaining for o in self._open.values() if o.slot == slot and o.symbol == symbol), Decimal(0))

    def instrument(self, symbol: str) -> Instrument:
        inst = self.instruments.get(symbol)
        if inst is None:
            inst = self.instruments[symbol] = Instrument(self.exchange, symbol)
        return inst

    # -- live path ----------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> list[OrderEvent | Fill]:
        return self.on_bars([bar])

    def on_bars(self, bars: Sequence[Bar]) -> list[OrderEvent | Fill]:
        """All bars of one timestamp (one per symbol)."""
        out: list[OrderEvent | Fill] = []
        if self.clock is not None and bars:
            self.clock.set(bars[0].exchange_ts)
        for bar in bars:
            out += self.apply(self.venue.on_bar(bar))
        if self.clock is not None and bars:
            self.clock.set(bars[0].exchange_ts + interval_ns(bars[0].interval))
        for bar in bars:
            # the close is the price at the bar's end: marked at its open time it reached the risk gate
            # older than the ticks already seen (counted as price_out_of_order at every bar in the stream)
            self._mark(bar.symbol, bar.close, bar.exchange_ts + interval_ns(bar.interval))
            if self.sizer.lookback:
                self._vol_now[bar.symbol] = self._vol_obj(bar.symbol).update(float(bar.close))
        if self._history.maxlen:
            self._history.append(list(bars))
        for bar in bars:
            ts = bar.exchange_ts + interval_ns(bar.interval)
            for slot, strat in list(self.slots.items()):
                self._ctx.slot, self._ctx.ts = slot, ts
                out += self._decide(slot, strat.on_bar(bar, self._ctx), ts)
        return out

    def on_tick(self, tick: Tick) -> list[OrderEvent | Fill]:
        if self.clock is not None:
            self.clock.set(tick.exchange_ts)
        out = self.apply(self.venue.on_tick(tick))
        self._mark(tick.symbol, tick.price, tick.exchange_ts)
        for slot, strat in list(self.slots.items()):
            self._ctx.slot, self._ctx.ts = slot, tick.exchange_ts
            out += self._decide(slot, strat.on_tick(tick, self._ctx), tick.exchange_ts)
        return out

    def swap_strategy(self, slot: str, strategy: Strategy, warmup: bool = True) -> None:
        """Replace the strategy in ``slot`` without touching positions or open orders.

        With ``warmup`` the new strategy first replays the engine's recent bars (``history``) with its
        outputs held back; its latest decision per symbol is then applied at the next event, so the
        position follows the new version from then on.
        """
        if slot not in self.slots:
            raise StrategyError(f"no strategy slot {slot!r} (slots: {', '.join(self.slots)})")
        self.slots[slot] = strategy
        self._sizers[slot] = strategy.sizer or self.sizer
        if not warmup:
            return
        for symbol, target in self.replay(slot, strategy).items():
            self._deferred[(slot, symbol)] = target

    def replay(self, slot: str, strategy: Strategy) -> dict[str, float]:
        """Feed the recent bars (``history``) to ``strategy`` as ``slot`` sees them, decisions held back;
        returns its latest target per symbol (a swapped-in strategy's, or a shadow's starting state)."""
        latest: dict[str, float] = {}
        for bars in self._history:
            for bar in bars:
                self._ctx.slot, self._ctx.ts = slot, bar.exchange_ts + interval_ns(bar.interval)
                for t in strategy.on_bar(bar, self._ctx):
                    latest[t.symbol] = t.target
        return latest

    # -- fast path (backtests) ----------------------------------------------------------------
    def run_fast(self, chunk: pl.DataFrame, symbol: str, interval: str, offset: int = 0) -> list[tuple[int, Fill]]:
        """Process one chunk of one symbol's bars with the strategy's vectorised ``target_positions``.

        Python work happens only at bars with a decision or an open order.  Returns the fills with
        the chunk-relative index (plus ``offset``) of the bar they happened at.
        """
        if len(self.slots) != 1:
            raise StrategyError("the fast path runs exactly one strategy slot")
        (slot, strat), = self.slots.items()
        targets = strat.target_positions(chunk, symbol)
        if targets is None:
            raise StrategyError(f"strategy {strat.name!r} has no vectorised target_positions")
        ts = chunk["timestamp"].to_numpy()
        o, h, lo, c, v = (chunk[k].to_numpy().astype(np.float64, copy=False) for k in ("open", "high", "low", "close", "volume"))
        vol = self._vol_obj(symbol).update_many(c) if self.sizer.lookback else None
        step = interval_ns(interval)
        has_decision = ~np.isnan(targets)
        if self.trade_from_ts is not None:
            # Held-back decisions take effect at the first tradable bar, as in on_bars.
            first = int(np.searchsorted(ts + step, self.trade_from_ts, side="right"))
            if first < len(ts):
                has_decision[first] = True
        decisions = np.flatnonzero(has_decision)
        fills: list[tuple[int, Fill]] = []
        n, k = len(c), 0
        i = 0 if self._open else (int(decisions[0]) if len(decisions) else n)
        while i < n:
            if self._open:
                bar = make_bar(self.exchange, symbol, interval, ts[i], o[i], h[i], lo[i], c[i], v[i])
                fills += [(offset + i, f) for f in self.apply(self.venue.on_bar(bar)) if isinstance(f, Fill)]
            while k < len(decisions) and decisions[k] < i:
                k += 1
            if k < len(decisions) and decisions[k] == i:
                self._mark(symbol, _dec(c[i]), int(ts[i]) + step)
                if vol is not None:
                    self._vol_now[symbol] = None if np.isnan(vol[i]) else float(vol[i])
                t_close = int(ts[i]) + step
                self._ctx.slot, self._ctx.ts = slot, t_close
                wanted = [] if np.isnan(targets[i]) else [TargetPosition(symbol, float(targets[i]))]
                self._decide(slot, wanted, t_close)
                k += 1
            if self._open:
                i += 1
            else:
                i = int(decisions[k]) if k < len(decisions) else n
        if n:
            self._mark(symbol, _dec(c[-1]), int(ts[-1]) + step)
            if vol is not None:
                self._vol_now[symbol] = None if np.isnan(vol[-1]) else float(vol[-1])
        return fills

    # -- internals ------------------------------------------------------------------------------
    def _vol_obj(self, symbol: str) -> RollingVolatility:
        obj = self._vol.get(symbol)
        if obj is None:
            obj = self._vol[symbol] = RollingVolatility(max(2, self.sizer.lookback))
        return obj

    def _mark(self, symbol: str, price: Decimal, ts: int) -> None:
        self.last_price[symbol] = price
        self.portfolio.mark(symbol, price)
        if self.risk is not None:
            self.risk.on_price(symbol, price, ts)

    def _decide(self, slot: str, targets: Iterable[TargetPosition], ts: int) -> list[OrderEvent | Fill]:
        out: list[OrderEvent | Fill] = []
        if self.trade_from_ts is not None and ts <= self.trade_from_ts:
            for t in targets:
                self._deferred[(slot, t.symbol)] = t.target
            return out
        wanted = {t.symbol: t.target for t in targets}
        for (s, sym), target in list(self._deferred.items()):  # held-back decisions take effect now
            if s == slot:
                del self._deferred[(s, sym)]
                wanted.setdefault(sym, target)
        for sym, target in wanted.items():
            out += self._act(slot, sym, target, ts)
        return out

    def _act(self, slot: str, symbol: str, target: float, ts: int) -> list[OrderEvent | Fill]:
        price = self.last_price.get(symbol)
        if price is None:
            self.rejected["no_price"] += 1
            return []
        inst = self.instrument(symbol)
        desired = self._sizers[slot].quantity(target, price, self.portfolio.equity(), inst, self._vol_now.get(symbol))
        if self.risk is not None:
            mult = self.risk.size_multiplier(slot)
            if mult != 1:
                desired = round_to_lot(desired * to_decimal(mult, "size_multiplier"), inst.lot_size)
        delta = desired - self.position(symbol, slot) - self.pending(slot, symbol)
        if delta == 0:
            return []
        seq_ts, seq = self._ts_seq
        if seq_ts != ts:
            seq = Counter()
            self._ts_seq = (ts, seq)
        seq[(slot, symbol)] += 1
        order = OrderRequest(
            client_order_id=stable_id("order", self.account, slot, symbol, ts, seq[(slot, symbol)]),
            account=self.account,
            strategy=slot,
            exchange=self.exchange,
            symbol=symbol,
            side=Side.BUY if delta > 0 else Side.SELL,
            order_type=OrderType.MARKET,
            quantity=abs(delta),
            ts=ts,
        )
        if self.risk is not None:
            decision = self.risk.check(order)
            if not decision.approved:
                self.rejected[decision.reason or "risk"] += 1
                return []
        self.n_orders += 1
        self._open[order.client_order_id] = _Open(slot, symbol, 1 if delta > 0 else -1, abs(delta))
        return self.apply(self.venue.submit(order))

    # -- orders from outside the strategies, venue reports ------------------------------------
    def submit_approved(self, order: OrderRequest) -> list[OrderEvent | Fill]:
        """Send an order the caller has already checked with the risk gate (e.g. a flatten's closing
        order) and apply what the venue reports.  Not counted as a strategy's pending quantity."""
        return self.apply(self.venue.submit(order))

    def cancel(self, client_order_id: str, ts: int) -> list[OrderEvent | Fill]:
        """Cancel an open order at the venue and apply what it reports."""
        return self.apply(self.venue.cancel(client_order_id, ts))

    def adopt_open(self, client_order_id: str, slot: str, symbol: str, sign: int, remaining: Decimal) -> None:
        """Count an order restored from the system of record (a parent still being worked) as pending."""
        if remaining > 0:
            self._open[client_order_id] = _Open(slot, symbol, sign, remaining)

    def clear_fills(self) -> None:
        """Forget the fills kept so far (see ``keep_fills``)."""
        self.fills.clear()

    def apply(self, events: Iterable[OrderEvent | Fill]) -> list[OrderEvent | Fill]:
        """Apply venue events: fills to the ledger, the risk gate and the strategy (which may answer
        with new targets, whose orders' events are appended); order events to the risk gate and the
        open-order book.  Returns the events and everything they caused, in order."""
        if not events:  # the common case on the per-tick path: the venue had nothing to report
            return []
        events = list(events)
        out = list(events)
        for ev in events:
            if isinstance(ev, Fill):
                self.portfolio.apply_fill(ev)
                if self.keep_fills:
                    self.fills.append(ev)
                if self.risk is not None:
                    self.risk.on_fill(ev)
                key = ev.client_order_id
                o = self._open.get(key)
                if o is None and ev.parent_id is not None:  # a child of an order the OMS works as a parent
                    key = ev.parent_id
                    o = self._open.get(key)
                if o is not None:
                    o.remaining -= ev.quantity
                    if o.remaining <= 0:
                        del self._open[key]
                strat = self.slots.get(ev.strategy)
                if strat is not None:
                    self._ctx.slot, self._ctx.ts = ev.strategy, ev.ts
                    follow = strat.on_fill(ev, self._ctx)
                    if follow:
                        out += self._decide(ev.strategy, follow, ev.ts)
            else:
                if self.risk is not None:
                    self.risk.on_order_event(ev)
                if ev.status is OrderStatus.REJECTED:
                    self.rejected[f"venue_{ev.reason or 'rejected'}"] += 1
                if not ev.status.is_open:
                    self._open.pop(ev.client_order_id, None)
        return out
