"""The risk engine of one account: pre-trade checks, real-time P&L, drawdown tiers, circuit breakers,
kill switch and VaR.  Pure domain code: it sees the world only through its callbacks
(``check``, ``on_order_event``, ``on_fill``, ``on_price``, ``evaluate``) and an injectable clock, and
reports state changes and flatten requests through plain records, so the caller can write them to
the audit log.  Check order and reason codes: docs/RISK.md.

Floats on the hot path: limit comparisons of money amounts (notional, exposure, margin) use floats
with a relative tolerance of 1e-9; quantities (lot, tick, position limits) are compared exactly as
Decimal.  P&L totals are exact Decimals; the mark-to-market values are floats.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np

from trading.records import (
    NS_PER_S, Fill, Instrument, OrderEvent, OrderRequest, OrderType, Position, Side, TimeInForce, stable_id,
)
from trading.ledger import PREC as LEDGER_PREC
from trading.ledger import Holding, InvalidFillError, fee_terms
from trading.risk.book import ZERO, Leg, Totals
from trading.risk.breakers import VolatilityMonitor, trips
from trading.risk.errors import RiskDataError, RiskInputError
from trading.risk.limits import ExposureLimits, RiskLimits, StrategyLimits
from trading.risk.liquidation import DEFAULT_LOT, child_cap, liquidation_orders
from trading.risk.states import ScopeStates, StateTransition, TradingState, parse_scope
from trading.risk.var import METHODS, VarResult, var_cvar

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
_TOL = 1.0 + 1e-9  # float limit comparisons: "exactly at the limit" must pass despite rounding
_DAY_NS = 86_400 * NS_PER_S
_DEDUP_MEMORY = 200_000  # client order ids / fill ids remembered for duplicate detection


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    reason: str | None = None  # snake_case code of the first failed check
    detail: str = ""


APPROVED = RiskDecision(True)


@dataclass(frozen=True, slots=True)
class FlattenRequest:
    """What the caller must do to get flat: cancel these open orders, send these child orders."""

    scope: str
    reason: str
    ts: int
    cancel_order_ids: tuple[str, ...]
    orders: tuple[OrderRequest, ...]

    @property
    def id(self) -> str:
        return stable_id("flatten", self.scope, self.reason, self.ts)


@dataclass(frozen=True, slots=True)
class VarReport:
    account: VarResult
    strategies: dict[str, VarResult]


class _Rules:
    """A symbol's resolved limits and aggregates, cached until the limits change."""

    __slots__ = ("tick", "lot", "collar", "max_qty", "max_notional", "max_pos", "min_notional",
                 "base", "sector", "asset_limits", "sector_limits", "totals")


class _Open:
    """An approved order the engine counts as open; ``pending`` is what may still fill."""

    __slots__ = ("order", "buy", "qty", "filled", "final", "pending", "reserve_per_unit", "terminal", "resting")

    def __init__(self, order: OrderRequest, reserve_per_unit: float) -> None:
        self.order = order
        self.buy = order.side is Side.BUY
        self.qty = order.quantity
        self.filled = ZERO
        self.final: Decimal | None = None
        self.pending = ZERO
        self.reserve_per_unit = reserve_per_unit
        self.terminal = False
        # only GTC limit orders rest in the book (IOC/FOK and market orders never do)
        self.resting = (order.order_type is OrderType.LIMIT and order.price is not None
                        and order.time_in_force is TimeInForce.GTC)


class _Resting:
    """Prices of our own resting limit orders on one side of one symbol, with the best cached."""

    __slots__ = ("counts", "best", "is_bid")

    def __init__(self, is_bid: bool) -> None:
        self.counts: dict[Decimal, int] = {}
        self.best: Decimal | None = None
        self.is_bid = is_bid

    def add(self, price: Decimal) -> None:
        self.counts[price] = self.counts.get(price, 0) + 1
        if self.best is None or (price > self.best if self.is_bid else price < self.best):
            self.best = price

    def remove(self, price: Decimal) -> None:
        n = self.counts[price] - 1
        if n:
            self.counts[price] = n
            return
        del self.counts[price]
        if price == self.best:
            self.best = (max if self.is_bid else min)(self.counts, default=None)


def _reject(reason: str, detail: str = "") -> RiskDecision:
    return RiskDecision(False, reason, detail)


def _bounded_add(memory: dict[str, None], key: str) -> None:
    memory[key] = None
    if len(memory) > _DEDUP_MEMORY:
        del memory[next(iter(memory))]


class RiskEngine:
    """Risk state and controls of one account.  Not thread-safe: drive it from one loop."""

    def __init__(self, limits: RiskLimits, account: str, cash: Decimal, clock: Callable[[], int] | None = None,
                 *, instruments: Iterable[Instrument] | Mapping[str, Instrument] | None = None,
                 on_transition: Callable[[StateTransition], None] | None = None,
                 on_flatten: Callable[[FlattenRequest], None] | None = None) -> None:
        if not isinstance(cash, Decimal) or not cash.is_finite():
            raise RiskInputError(f"cash {cash!r} must be a finite Decimal")
        if isinstance(instruments, Mapping):
            instruments = instruments.values()
        self.account = account
        self._clock = clock or time.time_ns
        self._on_transition = on_transition
        self._on_flatten = on_flatten
        self._instruments = {i.symbol: i for i in instruments or ()}
        self._exchange = {s: i.exchange for s, i in self._instruments.items()}
        self._acct_scope = f"account:{account}"
        self._states = ScopeStates(self._emit)
        self.counters: Counter[str] = Counter()
        # money
        self._initial_cash = cash
        self._cash = cash
        self._cash_f = float(cash)
        self._realized = ZERO
        self._fees = ZERO
        self._cost = ZERO  # sum of q * avg_price over all positions
        self._s_realized: dict[str, Decimal] = {}
        self._s_fees: dict[str, Decimal] = {}
        self._s_cost: dict[str, Decimal] = {}
        self._positions: dict[tuple[str, str], Holding] = {}  # (strategy, symbol), booked by the ledger's code
        # marks
        self._mark: dict[str, float] = {}
        self._mark_ts: dict[str, int] = {}
        self._vol: dict[str, VolatilityMonitor] = {}
        self._volume: dict[str, deque[tuple[int, Decimal]]] = {}
        # exposure aggregates
        self._acct = Totals()
        self._asset_tot: dict[str, Totals] = {}
        self._sector_tot: dict[str, Totals] = {}
        self._strat_tot: dict[str, Totals] = {}
        self._legs: dict[str, Leg] = {}
        self._slegs: dict[tuple[str, str], Leg] = {}
        self._holders: dict[str, set[str]] = {}
        # orders
        self._orders: dict[str, _Open] = {}
        self._open_count = 0
        self._s_open: Counter[str] = Counter()
        self._reserved = 0.0
        self._bids: dict[str, _Resting] = {}
        self._asks: dict[str, _Resting] = {}
        self._rate_s: dict[str, deque[int]] = {}
        self._rate_m: dict[str, deque[int]] = {}
        self._seen_ids: dict[str, None] = {}
        self._recent: dict[tuple, int] = {}
        self._recent_q: deque[tuple[int, tuple]] = deque()
        self._fill_ids: dict[str, None] = {}
        self._preapproved: dict[str, OrderRequest] = {}
        # VaR scenarios
        self._scen_symbols: dict[str, int] = {}
        self._scen_returns: np.ndarray | None = None
        self._apply_limits(limits)
        # drawdown and daily P&L baselines
        now = self._clock()
        self._peak = self._cash_f
        self._s_peak: dict[str, float] = {}
        self._mult = 1.0
        self._s_mult: dict[str, float] = {}
        self._day_start_equity = self._cash_f
        self._s_day_start: dict[str, float] = {}
        self._next_day_ns = 0
        self._roll_day(now)

    # -----------------------------------------------------------------------------------------
    # Limits
    # -----------------------------------------------------------------------------------------

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def update_limits(self, new: RiskLimits) -> None:
        """Swap in new limits at runtime; they are validated first, so a bad update changes nothing."""
        if not isinstance(new, RiskLimits):
            raise RiskInputError(f"update_limits needs a RiskLimits, got {type(new).__name__}")
        RiskLimits.__post_init__(new)  # re-validate (cheap), in case the object was mutated via object.__setattr__
        old = self._limits
        if new.breakers != old.breakers:
            self._vol.clear()  # monitors are rebuilt with the new window on the next price
        self._apply_limits(new)
        self._rebuild_aggregates()
        if new.drawdown.day_start_hour_utc != old.drawdown.day_start_hour_utc:
            # keep today's baseline; the next rollover happens at the new hour
            offset = new.drawdown.day_start_hour_utc * 3600 * NS_PER_S
            now = self._clock()
            self._next_day_ns = (now - offset) // _DAY_NS * _DAY_NS + offset + _DAY_NS

    def _apply_limits(self, limits: RiskLimits) -> None:
        self._limits = limits
        self._rules: dict[str, _Rules] = {}
        self._strat_rules: dict[str, StrategyLimits] = {}
        self._stale_ns = int(limits.breakers.stale_after_s * NS_PER_S)
        self._dup_ns = int(limits.duplicate_window_s * NS_PER_S)
        self._sector_limits_on = bool(limits.sectors)

    def _rules_for(self, symbol: str) -> _Rules:
        r = self._rules.get(symbol)
        if r is not None:
            return r
        lim = self._limits
        sl = lim.for_symbol(symbol)
        inst = self._instruments.get(symbol)
        r = _Rules()
        r.tick = sl.tick_size if sl.tick_size is not None else inst.tick_size if inst else None
        r.lot = sl.lot_size if sl.lot_size is not None else inst.lot_size if inst else None
        r.collar = sl.collar_bps
        r.max_qty = sl.max_order_quantity
        r.max_notional = sl.max_order_notional
        r.max_pos = sl.max_position
        r.min_notional = float(inst.min_notional) if inst and inst.min_notional else None
        r.base = symbol.split("/")[0]
        r.sector = lim.sector_map.get(symbol)
        r.asset_limits = lim.assets.get(r.base)
        r.sector_limits = lim.sectors.get(r.sector) if r.sector is not None else None
        totals = [self._acct, self._asset_tot.setdefault(r.base, Totals())]
        if r.sector is not None:
            totals.append(self._sector_tot.setdefault(r.sector, Totals()))
        r.totals = tuple(totals)
        self._rules[symbol] = r
        return r

    def _strategy_limits(self, strategy: str) -> StrategyLimits:
        s = self._strat_rules.get(strategy)
        if s is None:
            s = self._strat_rules[strategy] = self._limits.for_strategy(strategy)
        return s

    # -----------------------------------------------------------------------------------------
    # Pre-trade check
    # -----------------------------------------------------------------------------------------

    def check(self, order: OrderRequest) -> RiskDecision:
        """Run the pre-trade checks in order; the first failure rejects.  An approved order is
        counted as open until its terminal OrderEvent."""
        now = self._clock()
        if now >= self._next_day_ns:
            self._roll_day(now)
        pre = self._preapproved.get(order.client_order_id)
        if pre is not None and pre == order:  # the engine's own liquidation child order
            del self._preapproved[order.client_order_id]
            self._register(order, now, 0.0)
            return APPROVED
        decision = self._evaluate(order, now)
        if decision is None:
            return APPROVED
        self.counters[f"rejected:{decision.reason}"] += 1
        return decision

    def _evaluate(self, order: OrderRequest, now: int) -> RiskDecision | None:
        lim = self._limits
        if order.account != self.account:
            return _reject("wrong_account", f"order account {order.account!r} is not {self.account!r}")
        sym = order.symbol
        strat = order.strategy
        buy = order.side is Side.BUY
        qty = order.quantity
        qty_ok = type(qty) is Decimal and qty.is_finite() and qty > 0
        leg = self._legs.get(sym)
        sleg = self._slegs.get((strat, sym))

        # 1. trading state: account, strategy, symbol (HALTED: nothing; REDUCING: reducing orders only)
        states = self._states.state
        if states:
            a = states.get(self._acct_scope)
            if a is HALTED:
                return _reject("account_halted", self._cause_text(self._acct_scope))
            sscope = f"strategy:{strat}"
            s = states.get(sscope)
            if s is HALTED:
                return _reject("strategy_halted", self._cause_text(sscope))
            yscope = f"symbol:{sym}"
            if yscope in states:
                self._states.expire(yscope, now)
                if yscope in states:
                    return _reject("symbol_halted", self._cause_text(yscope))
            if a is REDUCING and not (qty_ok and leg is not None and leg.reduces(buy, qty)):
                return _reject("account_reducing", self._cause_text(self._acct_scope))
            if s is REDUCING and not (qty_ok and sleg is not None and sleg.reduces(buy, qty)):
                return _reject("strategy_reducing", self._cause_text(sscope))

        # 2. restricted symbols
        if sym in lim.restricted_symbols:
            return _reject("restricted_symbol", f"{sym} is restricted")

        # 3. quantity and price sanity, reference price
        if not qty_ok:
            return _reject("invalid_quantity", f"quantity {qty!r} must be a positive finite Decimal")
        r = self._rules.get(sym) or self._rules_for(sym)
        if r.lot is not None and qty % r.lot:
            return _reject("lot_size", f"quantity {qty} is not a multiple of lot size {r.lot}")
        otype = order.order_type
        price = order.price
        if price is not None:
            if type(price) is not Decimal or not price.is_finite() or price <= 0:
                return _reject("invalid_price", f"price {price!r} must be a positive finite Decimal")
            if r.tick is not None and price % r.tick:
                return _reject("tick_size", f"price {price} is not a multiple of tick size {r.tick}")
        elif otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT:
            return _reject("invalid_price", f"{otype.value} order needs a price")
        if otype is OrderType.STOP or otype is OrderType.STOP_LIMIT:
            sp = order.stop_price
            if type(sp) is not Decimal or not sp.is_finite() or sp <= 0:
                return _reject("invalid_price", f"stop_price {sp!r} must be a positive finite Decimal")
            if r.tick is not None and sp % r.tick:
                return _reject("tick_size", f"stop_price {sp} is not a multiple of tick size {r.tick}")
        ref = self._mark.get(sym)
        if ref is None:
            return _reject("no_reference_price", f"no valid price seen for {sym}")
        age = now - self._mark_ts[sym]
        if age > self._stale_ns:
            return _reject("stale_price", f"last valid price of {sym} is {age / NS_PER_S:.1f}s old")
        px = float(price) if price is not None else ref
        qf = float(qty)
        notional = qf * px
        if r.min_notional is not None and notional < r.min_notional:
            return _reject("min_notional", f"notional {notional:.2f} < {r.min_notional}")

        # 4. price collar (fat finger) against the last trade / mid
        if price is not None and r.collar is not None and abs(px - ref) * 1e4 > r.collar * ref * _TOL:
            return _reject("price_collar", f"price {price} is {abs(px - ref) / ref * 1e4:.1f} bps from "
                                           f"reference {ref} (collar {r.collar} bps)")

        # 5. order size (scaled by the drawdown size multiplier unless the order reduces)
        reducing = leg is not None and leg.reduces(buy, qty)
        mult = 1.0 if reducing else min(self._mult, self._s_mult.get(strat, 1.0))
        if r.max_qty is not None:
            if qty > r.max_qty if mult == 1.0 else qf > float(r.max_qty) * mult * _TOL:
                return _reject("max_order_quantity", f"quantity {qty} > {r.max_qty} x {mult}")
        if r.max_notional is not None and notional > r.max_notional * mult * _TOL:
            return _reject("max_order_notional", f"notional {notional:.2f} > {r.max_notional} x {mult}")

        # 6. position per symbol after this order, counting open orders on the same side
        q = leg.q if leg is not None else ZERO
        if r.max_pos is not None:
            if buy:
                before = q + (leg.b if leg is not None else ZERO)
                after = before + qty
            else:
                before = q - (leg.s if leg is not None else ZERO)
                after = before - qty
            cap = r.max_pos if mult == 1.0 else r.max_pos * Decimal(repr(mult))
            if abs(after) > cap and abs(after) > abs(before):
                return _reject("max_position", f"{sym} position could reach {after} (limit {cap})")

        # 7. gross / net exposure per account, strategy, asset, sector (worst case, at the mark)
        d = _deltas(leg, buy, qf, ref)
        failed = self._exposure(self._acct, d, lim.account, "account")
        if failed:
            return failed
        if r.asset_limits is not None:
            failed = self._exposure(r.totals[1], d, r.asset_limits, f"asset {r.base}")
            if failed:
                return failed
        if self._sector_limits_on:
            if r.sector is None:
                return _reject("no_sector", f"{sym} has no sector in sector_map but sector limits are configured")
            if r.sector_limits is not None:
                failed = self._exposure(r.totals[2], d, r.sector_limits, f"sector {r.sector}")
                if failed:
                    return failed
        sl = self._strat_rules.get(strat) or self._strategy_limits(strat)
        if sl.max_gross_exposure is not None or sl.max_net_exposure is not None:
            st = self._strat_tot.get(strat) or Totals()
            failed = self._exposure(st, _deltas(sleg, buy, qf, ref), sl, f"strategy {strat}")
            if failed:
                return failed

        # 8. open orders
        mo = lim.account.max_open_orders
        if mo is not None and self._open_count + 1 > mo:
            return _reject("max_open_orders", f"account has {self._open_count} open orders (limit {mo})")
        if sl.max_open_orders is not None and self._s_open[strat] + 1 > sl.max_open_orders:
            return _reject("max_open_orders",
                           f"strategy {strat} has {self._s_open[strat]} open orders (limit {sl.max_open_orders})")

        # 9. order rate per strategy (sliding windows)
        if sl.max_orders_per_second is not None:
            n = _window_count(self._rate_s, strat, now - NS_PER_S)
            if n + 1 > sl.max_orders_per_second:
                return _reject("max_orders_per_second", f"strategy {strat}: {n} orders in the last second")
        if sl.max_orders_per_minute is not None:
            n = _window_count(self._rate_m, strat, now - 60 * NS_PER_S)
            if n + 1 > sl.max_orders_per_minute:
                return _reject("max_orders_per_minute", f"strategy {strat}: {n} orders in the last minute")

        # 10. duplicates: same client id, or an identical order within the window
        if order.client_order_id in self._seen_ids:
            return _reject("duplicate_client_order_id", f"client order id {order.client_order_id} already used")
        rq = self._recent_q
        while rq and now - rq[0][0] >= self._dup_ns:
            ts0, key0 = rq.popleft()
            if self._recent.get(key0) == ts0:
                del self._recent[key0]
        key = (strat, sym, buy, qty, price)
        t0 = self._recent.get(key)
        if t0 is not None and now - t0 < self._dup_ns:
            return _reject("duplicate_order", f"identical order {key} {(now - t0) / NS_PER_S:.3f}s ago")

        # 11. self-trade prevention against our own resting orders (market orders cross everything)
        if otype is OrderType.LIMIT or otype is OrderType.MARKET:
            other = (self._asks if buy else self._bids).get(sym)
            if other is not None and other.best is not None and (
                    price is None or (price >= other.best if buy else price <= other.best)):
                return _reject("self_trade", f"{order.side.value} {price or 'market'} would cross our own resting "
                                             f"{'sell' if buy else 'buy'} at {other.best}")

        # 12. margin and leverage (only orders that add to the account's worst-case gross)
        reserve = 0.0
        if d[0] > 0:
            rate = lim.account.margin_rate
            reserve = notional * rate
            equity = self._cash_f + self._acct.mv
            available = equity - self._acct.gp * rate - self._reserved
            if reserve > available * _TOL if available > 0 else reserve > 0:
                return _reject("insufficient_margin", f"needs {reserve:.2f}, available {available:.2f}")
            ml = lim.account.max_leverage
            if ml is not None:
                gross = self._acct.g + d[0]
                if equity <= 0 or gross > ml * equity * _TOL:
                    return _reject("max_leverage", f"gross {gross:.2f} / equity {equity:.2f} > {ml}")

        self._register(order, now, reserve / qf)
        return None

    def _exposure(self, t: Totals, d: tuple[float, float, float], lim: ExposureLimits | StrategyLimits,
                  who: str) -> RiskDecision | None:
        """Reject if the order takes a worst-case exposure beyond its limit and makes it larger."""
        dg, dnl, dns = d
        mg = lim.max_gross_exposure
        if mg is not None and dg > 0 and t.g + dg > mg * _TOL:
            return _reject("max_gross_exposure", f"{who}: gross exposure {t.g + dg:.2f} > {mg}")
        mn = lim.max_net_exposure
        if mn is not None:
            after = max(abs(t.nl + dnl), abs(t.ns + dns))
            if after > mn * _TOL and after > t.net:
                return _reject("max_net_exposure", f"{who}: net exposure {after:.2f} > {mn}")
        return None

    def _register(self, order: OrderRequest, now: int, reserve_per_unit: float) -> None:
        cid = order.client_order_id
        rec = _Open(order, reserve_per_unit)
        self._orders[cid] = rec
        self._open_count += 1
        self._s_open[order.strategy] += 1
        self._set_pending(rec, rec.qty)
        strat = order.strategy
        self._rate_s.setdefault(strat, deque()).append(now)
        self._rate_m.setdefault(strat, deque()).append(now)
        _bounded_add(self._seen_ids, cid)
        key = (strat, order.symbol, rec.buy, order.quantity, order.price)
        self._recent[key] = now
        self._recent_q.append((now, key))
        if rec.resting:
            book = self._bids if rec.buy else self._asks
            book.setdefault(order.symbol, _Resting(rec.buy)).add(order.price)
        if order.exchange:
            self._exchange[order.symbol] = order.exchange

    def _set_pending(self, rec: _Open, pending: Decimal) -> None:
        """Move an open order's pending quantity, keeping legs, totals and reserved cash in step."""
        delta = pending - rec.pending
        if not delta:
            return
        rec.pending = pending
        o = rec.order
        self._reserved += float(delta) * rec.reserve_per_unit
        mark = self._mark.get(o.symbol, 0.0)
        for leg in (self._leg(o.symbol), self._sleg(o.strategy, o.symbol)):
            if rec.buy:
                leg.add(db=delta)
            else:
                leg.add(ds=delta)
            leg.refresh(mark)
        if pending <= 0 and rec.resting:
            rec.resting = False
            (self._bids if rec.buy else self._asks)[o.symbol].remove(o.price)

    def _leg(self, symbol: str) -> Leg:
        leg = self._legs.get(symbol)
        if leg is None:
            leg = self._legs[symbol] = Leg(self._rules_for(symbol).totals)
        return leg

    def _sleg(self, strategy: str, symbol: str) -> Leg:
        leg = self._slegs.get((strategy, symbol))
        if leg is None:
            totals = self._strat_tot.setdefault(strategy, Totals())
            leg = self._slegs[(strategy, symbol)] = Leg((totals,))
            self._holders.setdefault(symbol, set()).add(strategy)
        return leg

    # -----------------------------------------------------------------------------------------
    # Order events and fills
    # -----------------------------------------------------------------------------------------

    def on_order_event(self, event: OrderEvent) -> None:
        """Track the order's life; a terminal status stops counting it as open (idempotent)."""
        if event.account != self.account:
            raise RiskInputError(f"order event account {event.account!r} is not {self.account!r}")
        rec = self._orders.get(event.client_order_id)
        if rec is None:
            self.counters["order_event_unknown_order"] += 1
            return
        if event.status.is_open or rec.terminal:
            return
        final = event.filled_quantity
        if type(final) is not Decimal or not final.is_finite() or final < 0:
            raise RiskInputError(f"order event filled_quantity {final!r} must be a non-negative Decimal")
        rec.terminal = True
        rec.final = final
        self._open_count -= 1
        self._s_open[rec.order.strategy] -= 1
        if rec.resting:
            rec.resting = False
            (self._bids if rec.buy else self._asks)[rec.order.symbol].remove(rec.order.price)
        # fills the venue reports but we have not seen yet stay pending, so exposure is not understated
        self._set_pending(rec, min(max(final - rec.filled, ZERO), rec.pending))
        if not rec.pending:
            del self._orders[event.client_order_id]

    def on_fill(self, fill: Fill) -> None:
        """Apply a fill to positions, cash and P&L (a fill id seen before is ignored)."""
        if fill.account != self.account:
            raise RiskInputError(f"fill account {fill.account!r} is not {self.account!r}")
        for name, v in (("quantity", fill.quantity), ("price", fill.price)):  # no getattr: hot path
            if type(v) is not Decimal or not v.is_finite() or v <= 0:
                raise RiskInputError(f"fill {fill.fill_id}: {name} {v!r} must be a positive finite Decimal")
        if type(fill.fee) is not Decimal or not fill.fee.is_finite():
            raise RiskInputError(f"fill {fill.fill_id}: fee {fill.fee!r} must be a finite Decimal")
        if fill.fill_id in self._fill_ids:
            self.counters["fill_duplicate"] += 1
            return
        with localcontext() as ctx:
            ctx.prec = LEDGER_PREC
            try:  # the ledger's fee rule (trading.ledger): quote as is, base at the fill price, else refused
                fee, fee_base = fee_terms(fill)
            except InvalidFillError as exc:
                raise RiskInputError(str(exc)) from None
        _bounded_add(self._fill_ids, fill.fill_id)
        now = self._clock()
        if now >= self._next_day_ns:
            self._roll_day(now)
        sym, strat = fill.symbol, fill.strategy
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        h = self._positions.get((strat, sym))
        if h is None:
            h = self._positions[(strat, sym)] = Holding()
        q0, c0, r0 = h.qty, h.cost, h.realized
        with localcontext() as ctx:
            ctx.prec = LEDGER_PREC
            h.trade(signed, fill.price, fee, fee_base)
            realized, cost_delta, dq = h.realized - r0, h.cost - c0, h.qty - q0
            self._cash -= signed * fill.price + fee - fee_base * fill.price
        self._realized += realized
        self._fees += fee
        self._cost += cost_delta
        self._s_realized[strat] = self._s_realized.get(strat, ZERO) + realized
        self._s_fees[strat] = self._s_fees.get(strat, ZERO) + fee
        self._s_cost[strat] = self._s_cost.get(strat, ZERO) + cost_delta
        self._cash_f = float(self._cash)
        if fill.exchange:
            self._exchange.setdefault(sym, fill.exchange)
        if sym not in self._mark:  # our own trade is a valid first price
            self._mark[sym] = float(fill.price)
            self._mark_ts[sym] = fill.ts
        mark = self._mark[sym]
        leg, sleg = self._leg(sym), self._sleg(strat, sym)
        leg.add(dq=dq)
        sleg.add(dq=dq)
        rec = self._orders.get(fill.client_order_id)
        if rec is None:
            self.counters["fill_without_open_order"] += 1
        else:
            rec.filled += fill.quantity
            target = rec.final if rec.terminal else rec.qty
            self._set_pending(rec, min(max(target - rec.filled, ZERO), rec.pending))
            if rec.terminal and not rec.pending:
                del self._orders[fill.client_order_id]
        leg.refresh(mark)
        sleg.refresh(mark)
        self._assess(now, (strat,))

    # -----------------------------------------------------------------------------------------
    # Prices, breakers, time-based rules
    # -----------------------------------------------------------------------------------------

    def on_price(self, symbol: str, price: Decimal, ts: int, volume: Decimal | None = None) -> None:
        """A last trade or mid: marks to market, feeds the breakers.  A NaN, non-positive, out-of-order
        or stale price is counted and ignored, so it never produces a P&L or VaR number."""
        now = self._clock()
        if now >= self._next_day_ns:
            self._roll_day(now)
        try:
            p = float(price)
        except (TypeError, ValueError):
            p = math.nan
        if not math.isfinite(p) or p <= 0:
            self.counters["price_invalid"] += 1
            return
        last_ts = self._mark_ts.get(symbol)
        if last_ts is not None and ts < last_ts:
            self.counters["price_out_of_order"] += 1
            return
        if now - ts > self._stale_ns:
            self.counters["price_stale"] += 1
            return
        self._mark[symbol] = p
        self._mark_ts[symbol] = ts
        if volume is not None and volume > 0:
            self._add_volume(symbol, ts, volume)
        if self._states.state:  # the scope string is only built when some scope has a state (per-tick cost)
            yscope = f"symbol:{symbol}"
            if yscope in self._states.state:
                self._states.clear(yscope, "stale_data", "stale_data: fresh data", now)
                self._states.expire(yscope, now)
        br = self._limits.breakers
        if br.volatility_sigma is not None:
            mon = self._vol.get(symbol)
            if mon is None:
                mon = self._vol[symbol] = VolatilityMonitor(br.volatility_window, br.volatility_min_samples)
            judged = mon.update(p)
            if trips(judged, br.volatility_sigma, br.volatility_min_move_bps):
                move, sigma = judged
                self._states.add(f"symbol:{symbol}", "volatility", HALTED, f"{symbol} moved {move:+.5f} (sigma {sigma:.5f}, "
                                 f"limit {br.volatility_sigma} sigma)", now,
                                 until_ns=now + int(br.cooldown_s * NS_PER_S))
        leg = self._legs.get(symbol)
        if leg is not None:
            leg.refresh(p)
        holders = self._holders.get(symbol, ())
        for strat in holders:
            self._slegs[(strat, symbol)].refresh(p)
        self._assess(now, holders)

    def data_quality_halt(self, symbol: str, reason: str, who: str = "data_quality") -> None:
        """Halt one symbol on an external data-quality alarm; only ``resume`` lifts it."""
        self._states.add(f"symbol:{symbol}", "data_quality", HALTED, reason, self._clock(), who=who)

    def evaluate(self) -> None:
        """Time-based rules, to call periodically (e.g. every second): stale-data halts, cool-downs,
        day rollover; also re-sums the float aggregates so rounding drift cannot build up."""
        now = self._clock()
        if now >= self._next_day_ns:
            self._roll_day(now)
        for sym, ts in self._mark_ts.items():
            yscope = f"symbol:{sym}"
            if now - ts > self._stale_ns and not self._states.has(yscope, "stale_data"):
                self._states.add(yscope, "stale_data", HALTED, f"no valid tick for {(now - ts) / NS_PER_S:.1f}s", now)
        for sc in self._states.scopes_with_causes():
            self._states.expire(sc, now)
        self._rebuild_aggregates()
        self._assess(now, tuple(self._strat_tot))

    def _add_volume(self, symbol: str, ts: int, volume: Decimal) -> None:
        dq = self._volume.setdefault(symbol, deque())
        dq.append((ts, Decimal(volume)))
        horizon = ts - int(self._limits.liquidation.volume_window_s * NS_PER_S)
        while dq and dq[0][0] < horizon:
            dq.popleft()

    def recent_volume(self, symbol: str) -> Decimal | None:
        """Volume seen in the liquidation volume window (None if none was reported)."""
        dq = self._volume.get(symbol)
        if not dq:
            return None
        horizon = self._clock() - int(self._limits.liquidation.volume_window_s * NS_PER_S)
        return sum((v for ts, v in dq if ts >= horizon), ZERO) or None

    def _roll_day(self, now: int) -> None:
        offset = self._limits.drawdown.day_start_hour_utc * 3600 * NS_PER_S
        start = (now - offset) // _DAY_NS * _DAY_NS + offset
        first = self._next_day_ns == 0
        self._next_day_ns = start + _DAY_NS
        self._day_start_equity = self._equity()
        for strat in self._strat_tot:
            self._s_day_start[strat] = self._strategy_pnl(strat)
        if not first:
            self._states.clear(self._acct_scope, "daily_loss_limit", "daily_loss_limit: new trading day", now)
            for strat in self._strat_tot:
                self._states.clear(f"strategy:{strat}", "daily_loss_limit", "daily_loss_limit: new trading day", now)

    # -----------------------------------------------------------------------------------------
    # Drawdown tiers and daily loss
    # -----------------------------------------------------------------------------------------

    def _equity(self) -> float:
        return self._cash_f + self._acct.mv

    def _strategy_pnl(self, strat: str) -> float:
        t = self._strat_tot.get(strat)
        mv = t.mv if t is not None else 0.0
        return float(self._s_realized.get(strat, ZERO) - self._s_fees.get(strat, ZERO)
                     - self._s_cost.get(strat, ZERO)) + mv

    def _assess(self, now: int, strategies: Iterable[str]) -> None:
        dd = self._limits.drawdown
        equity = self._equity()
        if equity > self._peak:
            self._peak = equity
        self._mult = self._tiers(self._acct_scope, None, equity, self._peak, equity - self._day_start_equity,
                                 dd.daily_loss_limit, now)
        for strat in strategies:
            sl = self._strategy_limits(strat)
            if sl.capital is None and sl.daily_loss_limit is None:
                continue
            pnl = self._strategy_pnl(strat)
            daily = pnl - self._s_day_start.setdefault(strat, 0.0)
            if sl.capital is None:
                eq = peak = 0.0  # no capital: daily loss only
            else:
                eq = sl.capital + pnl
                peak = self._s_peak[strat] = max(self._s_peak.get(strat, sl.capital), eq)
            self._s_mult[strat] = self._tiers(f"strategy:{strat}", strat, eq, peak, daily, sl.daily_loss_limit, now)

    def _tiers(self, scope_: str, strategy: str | None, equity: float, peak: float, daily: float,
               daily_limit: float | None, now: int) -> float:
        """Apply the drawdown tiers and daily loss limit to one scope; returns its size multiplier."""
        dd = self._limits.drawdown
        mult = 1.0
        if peak > 0:
            drawdown = (peak - equity) / peak
            if dd.flatten_at is not None and drawdown >= dd.flatten_at:
                if not self._states.has(scope_, "drawdown_flatten"):
                    text = _drawdown_text(drawdown, peak)
                    self._states.add(scope_, "drawdown_flatten", HALTED, f"{text} >= {dd.flatten_at:.2%}", now)
                    request = self._flatten_request(scope_, strategy, f"drawdown_flatten: {text}", now, True)
                    if self._on_flatten is not None:
                        self._on_flatten(request)
            elif dd.stop_entries_at is not None and drawdown >= dd.stop_entries_at:
                if not self._states.has(scope_, "drawdown_stop_entries"):
                    self._states.add(scope_, "drawdown_stop_entries", REDUCING,
                                     f"{_drawdown_text(drawdown, peak)} >= {dd.stop_entries_at:.2%}", now)
            if dd.reduce_at is not None and drawdown >= dd.reduce_at:
                mult = dd.size_multiplier
        if daily_limit is not None and daily <= -daily_limit and not self._states.has(scope_, "daily_loss_limit"):
            level = HALTED if dd.daily_loss_action == "halted" else REDUCING
            self._states.add(scope_, "daily_loss_limit", level, f"daily P&L {daily:.2f} <= -{daily_limit}", now)
        return mult

    def size_multiplier(self, strategy: str | None = None) -> Decimal:
        """1 normally; below 1 while the account (or the strategy) is past drawdown tier D1."""
        m = self._mult if strategy is None else min(self._mult, self._s_mult.get(strategy, 1.0))
        return Decimal(1) if m == 1.0 else Decimal(repr(m))

    # -----------------------------------------------------------------------------------------
    # States, kill switch, operator actions
    # -----------------------------------------------------------------------------------------

    @property
    def state(self) -> TradingState:
        return self._states.get(self._acct_scope)

    def state_of(self, scope_: str) -> TradingState:
        parse_scope(scope_)
        return self._states.get(scope_)

    def kill_switch(self, reason: str, flatten: bool = False, *, who: str = "operator") -> FlattenRequest:
        """HALT the account: every new order is rejected until ``resume``.  Returns the open orders to
        cancel and, with ``flatten``, the child orders closing every position (they pass ``check``)."""
        now = self._clock()
        self._states.add(self._acct_scope, "kill_switch", HALTED, reason, now, who=who)
        return self._flatten_request(self._acct_scope, None, f"kill_switch: {reason}", now, flatten)

    def set_state(self, scope_: str, state: TradingState, who: str, reason: str) -> None:
        """Operator: put a scope in REDUCING or HALTED (a symbol only HALTED); lifted by ``resume``."""
        kind, _ = self._own_scope(scope_)
        if state is ACTIVE:
            raise RiskInputError("set_state: use resume() to return a scope to ACTIVE")
        if kind == "symbol" and state is not HALTED:
            raise RiskInputError(f"set_state: a symbol can only be HALTED, not {state.value}")
        self._states.add(scope_, "operator", state, reason, self._clock(), who=who)

    def resume(self, scope: str, who: str, reason: str) -> None:
        """Operator: clear every cause on the scope.  Drawdown and daily-loss baselines of an account or
        strategy are re-based at the current equity, so the same loss does not re-trigger at once."""
        kind, name = self._own_scope(scope)
        now = self._clock()
        self._states.clear_all(scope, f"operator resume: {reason}", now, who)
        if kind == "account":
            self._peak = self._day_start_equity = self._equity()
            self._mult = 1.0
        elif kind == "strategy":
            pnl = self._strategy_pnl(name)
            self._s_day_start[name] = pnl
            capital = self._strategy_limits(name).capital
            if capital is not None:
                self._s_peak[name] = capital + pnl
            self._s_mult.pop(name, None)
        else:
            mon = self._vol.get(name)
            if mon is not None:
                mon.reset()

    def _own_scope(self, scope_: str) -> tuple[str, str]:
        kind, name = parse_scope(scope_)
        if kind == "account" and name != self.account:
            raise RiskInputError(f"scope {scope_!r} is not this engine's account {self.account!r}")
        return kind, name

    def _flatten_request(self, scope_: str, strategy: str | None, reason: str, now: int,
                         with_orders: bool) -> FlattenRequest:
        cancels = tuple(cid for cid, rec in self._orders.items()
                        if not rec.terminal and (strategy is None or rec.order.strategy == strategy))
        orders: list[OrderRequest] = []
        if with_orders:
            request_id = stable_id("flatten", scope_, reason, now)
            liq = self._limits.liquidation
            for (strat, sym), pos in sorted(self._positions.items()):
                if pos.qty == 0 or (strategy is not None and strat != strategy):
                    continue
                r = self._rules_for(sym)
                lot = r.lot or DEFAULT_LOT
                cap = child_cap(liq, self._mark.get(sym), self.recent_volume(sym), lot)
                orders += liquidation_orders(self.account, strat, self._exchange.get(sym, ""), sym, pos.qty,
                                             cap, lot, now, liq.interval_s, request_id)
            for o in orders:
                if o.client_order_id not in self._seen_ids:  # a replayed request must not re-approve
                    self._preapproved[o.client_order_id] = o
        return FlattenRequest(scope_, reason, now, cancels, tuple(orders))

    def _emit(self, transition: StateTransition) -> None:
        self.counters[f"transition:{transition.new.value}"] += 1
        if self._on_transition is not None:
            self._on_transition(transition)

    def _cause_text(self, scope_: str) -> str:
        return "; ".join(f"{name}: {c.detail}" for name, c in self._states.causes(scope_).items())

    # -----------------------------------------------------------------------------------------
    # Views: positions, metrics, VaR
    # -----------------------------------------------------------------------------------------

    def positions(self) -> list[Position]:
        """Copies of the non-flat positions per (strategy, symbol)."""
        return [Position(self.account, sym, strat, h.qty, h.avg_price, h.realized, h.fees)
                for (strat, sym), h in self._positions.items() if h.qty != 0]

    def open_order_ids(self, strategy: str | None = None) -> list[str]:
        return [cid for cid, rec in self._orders.items()
                if not rec.terminal and (strategy is None or rec.order.strategy == strategy)]

    def _rebuild_aggregates(self) -> None:
        """Recompute every Totals from the legs (after a sector-map change, and against float drift)."""
        self._rules.clear()
        self._acct.__init__()
        for t in (*self._asset_tot.values(), *self._sector_tot.values(), *self._strat_tot.values()):
            t.__init__()
        for sym, leg in self._legs.items():
            leg.totals = self._rules_for(sym).totals
            leg.g = leg.nl = leg.ns = leg.mv = leg.gp = 0.0
            leg.refresh(self._mark.get(sym, 0.0))
        for (_, sym), leg in self._slegs.items():
            leg.g = leg.nl = leg.ns = leg.mv = leg.gp = 0.0
            leg.refresh(self._mark.get(sym, 0.0))

    def metrics(self) -> dict:
        """A plain snapshot for the risk_metrics table: P&L, exposure, margin, states, counters, VaR."""
        now = self._clock()
        equity = self._equity()
        unrealized = self._acct.mv - float(self._cost)
        rate = self._limits.account.margin_rate
        margin_used = self._acct.gp * rate
        stale = sorted(s for s, ts in self._mark_ts.items() if now - ts > self._stale_ns)
        out: dict = {
            "ts": now, "account": self.account, "state": self.state.value,
            "cash": float(self._cash), "equity": equity,
            "realized_pnl": float(self._realized), "unrealized_pnl": unrealized, "fees": float(self._fees),
            "total_pnl": equity - float(self._initial_cash), "daily_pnl": equity - self._day_start_equity,
            "peak_equity": self._peak,
            "drawdown": (self._peak - equity) / self._peak if self._peak > 0 else 0.0,
            "size_multiplier": self._mult,
            "gross_exposure": self._acct.gp, "net_exposure": self._acct.mv,
            "worst_case_gross_exposure": self._acct.g, "worst_case_net_exposure": self._acct.net,
            "leverage": self._acct.gp / equity if equity > 0 else math.inf,
            "margin_used": margin_used, "reserved": self._reserved,
            "margin_usage": (margin_used + self._reserved) / equity if equity > 0 else math.inf,
            "open_orders": self._open_count, "stale_symbols": stale,
            "halted_symbols": {sc.split(":", 1)[1]: sorted(self._states.causes(sc))
                               for sc in self._states.state if sc.startswith("symbol:")},
            "counters": dict(self.counters),
        }
        strategies = {}
        for strat, t in self._strat_tot.items():
            realized = float(self._s_realized.get(strat, ZERO))
            strategies[strat] = {
                "state": self._states.get(f"strategy:{strat}").value,
                "realized_pnl": realized, "unrealized_pnl": t.mv - float(self._s_cost.get(strat, ZERO)),
                "fees": float(self._s_fees.get(strat, ZERO)), "pnl": self._strategy_pnl(strat),
                "daily_pnl": self._strategy_pnl(strat) - self._s_day_start.get(strat, 0.0),
                "gross_exposure": t.gp, "net_exposure": t.mv, "open_orders": self._s_open[strat],
                "size_multiplier": min(self._mult, self._s_mult.get(strat, 1.0)),
            }
        out["strategies"] = strategies
        out["positions"] = [
            {"strategy": strat, "symbol": sym, "quantity": h.qty, "avg_price": h.avg_price,
             "realized_pnl": float(h.realized), "mark": self._mark.get(sym),
             "unrealized_pnl": float(h.qty) * self._mark[sym] - float(h.cost),
             "stale": sym in stale}
            for (strat, sym), h in self._positions.items() if h.qty != 0
        ]
        if self._scen_returns is not None:
            try:
                rep = self.var()
                out["var"] = {"account": _var_dict(rep.account),
                              "strategies": {s: _var_dict(v) for s, v in rep.strategies.items()}}
            except RiskDataError as exc:
                out["var_error"] = str(exc)
        return out

    def set_scenarios(self, symbols: Sequence[str], returns: np.ndarray) -> None:
        """Return scenarios for VaR: a (T x N) matrix of 1-day simple returns, column i for symbols[i]."""
        r = np.asarray(returns, dtype=float)
        if r.ndim != 2 or r.shape[1] != len(symbols):
            raise RiskDataError(f"returns shape {r.shape} does not match {len(symbols)} symbols")
        if len(set(symbols)) != len(symbols):
            raise RiskDataError("scenario symbols must be unique")
        bad = ~np.isfinite(r).all(axis=0)
        if bad.any():
            raise RiskDataError(f"non-finite returns for {[symbols[i] for i in np.flatnonzero(bad)]}")
        self._scen_symbols = {s: i for i, s in enumerate(symbols)}
        self._scen_returns = r

    def var(self, method: str = "historical", confidence: float | None = None,
            horizon_days: float | None = None) -> VarReport:
        """VaR/CVaR of the account and of each strategy with positions, at current marks.  Fails
        (RiskDataError) rather than use a position without scenarios or without a fresh mark."""
        if method not in METHODS:
            raise RiskDataError(f"VaR method {method!r} unknown; expected one of {METHODS}")
        if self._scen_returns is None:
            raise RiskDataError("no return scenarios: call set_scenarios first")
        vs = self._limits.var
        conf = vs.confidence if confidence is None else confidence
        horizon = vs.horizon_days if horizon_days is None else horizon_days
        now = self._clock()
        strategies = sorted({s for (s, _), h in self._positions.items() if h.qty != 0})
        col = {s: j + 1 for j, s in enumerate(strategies)}
        exposures = np.zeros((len(self._scen_symbols), 1 + len(strategies)))
        for (strat, sym), h in self._positions.items():
            if h.qty == 0:
                continue
            i = self._scen_symbols.get(sym)
            if i is None:
                raise RiskDataError(f"no return scenarios for {sym}")
            if sym not in self._mark_ts or now - self._mark_ts[sym] > self._stale_ns:
                raise RiskDataError(f"no fresh valid price for {sym}")
            value = float(h.qty) * self._mark[sym]
            exposures[i, 0] += value
            exposures[i, col[strat]] += value
        v, c = var_cvar(self._scen_returns, exposures, method, conf, horizon, vs.simulations, vs.seed)
        results = [VarResult(method, conf, horizon, float(v[j]), float(c[j])) for j in range(len(strategies) + 1)]
        return VarReport(results[0], dict(zip(strategies, results[1:])))


def _drawdown_text(drawdown: float, peak: float) -> str:
    # Built only when a tier is crossed: _tiers runs on every price, and formatting this string each
    # time was a measurable share of the per-tick cost.
    return f"drawdown {drawdown:.2%} from peak {peak:.2f}"


def _deltas(leg: Leg | None, buy: bool, qf: float, mark: float) -> tuple[float, float, float]:
    """Change of a leg's worst-case (gross, net long, net short) if an order of ``qf`` is added."""
    if leg is None:
        x = qf * mark
        return (x, x, 0.0) if buy else (x, 0.0, -x)
    if buy:
        nl = (leg.qf + leg.bf + qf) * mark
        return max(abs(nl), abs(leg.ns)) - leg.g, nl - leg.nl, 0.0
    ns = (leg.qf - leg.sf - qf) * mark
    return max(abs(leg.nl), abs(ns)) - leg.g, 0.0, ns - leg.ns


def _window_count(windows: dict[str, deque[int]], key: str, horizon: int) -> int:
    dq = windows.get(key)
    if dq is None:
        return 0
    while dq and dq[0] <= horizon:
        dq.popleft()
    return len(dq)


def _var_dict(v: VarResult) -> dict:
    return {"method": v.method, "confidence": v.confidence, "horizon_days": v.horizon_days,
            "var": v.var, "cvar": v.cvar}
