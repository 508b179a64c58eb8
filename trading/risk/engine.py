"""The risk engine of one account: pre-trade checks, real-time P&L, drawdown tiers, circuit breakers,
kill switch and VaR.  Pure domain code: it sees the world only through its callbacks
(``check``, ``on_order_event``, ``on_fill``, ``on_price``, ``evaluate``) and an injectable clock, and
reports state changes and flatten requests through plain records, so the caller can write them to
the audit log.  Check order and reason codes: docs/RISK.md.

``RiskEngine`` holds the state and books order events, fills and prices (this module); the rest of its
behaviour lives beside it, one concern per module: the pre-trade check (``pretrade``), drawdown tiers
and daily loss (``drawdown``), states, kill switch and flatten (``controls``), positions, metrics and
VaR (``views``).  Positions are booked by ``trading.ledger.Holding``.

Floats on the hot path: limit comparisons of money amounts (notional, exposure, margin) use floats
with a relative tolerance of 1e-9; quantities (lot, tick, position limits) are compared exactly as
Decimal.  P&L totals are exact Decimals; the mark-to-market values are floats.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, localcontext

import numpy as np

from trading.ledger import fee_terms, Holding, InvalidFillError, PREC as LEDGER_PREC
from trading.records import Fill, Instrument, NS_PER_S, OrderEvent, OrderRequest, Side
from trading.risk.book import Leg, Totals, ZERO
from trading.risk.breakers import trips, VolatilityMonitor
from trading.risk.controls import OperatorControls
from trading.risk.decisions import FlattenRequest
from trading.risk.drawdown import DAY_NS, DrawdownTiers
from trading.risk.errors import RiskInputError
from trading.risk.limits import RiskLimits, StrategyLimits
from trading.risk.orders import bounded_add, OpenOrder, RestingPrices
from trading.risk.pretrade import PreTradeChecks
from trading.risk.states import HALTED, ScopeStates, StateTransition
from trading.risk.views import RiskViews


class SymbolRules:
    """A symbol's resolved limits and aggregates, cached until the limits change."""

    __slots__ = ("tick", "lot", "collar", "max_qty", "max_notional", "max_pos", "min_notional",
                 "base", "sector", "asset_limits", "sector_limits", "totals")


class RiskEngine(PreTradeChecks, DrawdownTiers, OperatorControls, RiskViews):
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
        self._orders: dict[str, OpenOrder] = {}
        self._open_count = 0
        self._s_open: Counter[str] = Counter()
        self._reserved = 0.0
        self._bids: dict[str, RestingPrices] = {}
        self._asks: dict[str, RestingPrices] = {}
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
            self._next_day_ns = (now - offset) // DAY_NS * DAY_NS + offset + DAY_NS

    def _apply_limits(self, limits: RiskLimits) -> None:
        self._limits = limits
        self._rules: dict[str, SymbolRules] = {}
        self._strat_rules: dict[str, StrategyLimits] = {}
        self._stale_ns = int(limits.breakers.stale_after_s * NS_PER_S)
        self._dup_ns = int(limits.duplicate_window_s * NS_PER_S)
        self._sector_limits_on = bool(limits.sectors)

    def _rules_for(self, symbol: str) -> SymbolRules:
        r = self._rules.get(symbol)
        if r is not None:
            return r
        lim = self._limits
        sl = lim.for_symbol(symbol)
        inst = self._instruments.get(symbol)
        r = SymbolRules()
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


    def _set_pending(self, rec: OpenOrder, pending: Decimal) -> None:
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
        bounded_add(self._fill_ids, fill.fill_id)
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
        key = fill.client_order_id
        rec = self._orders.get(key)
        if rec is None and fill.parent_id is not None:  # a child of a parent order the gate approved whole
            key = fill.parent_id
            rec = self._orders.get(key)
        if rec is None:
            self.counters["fill_without_open_order"] += 1
        else:
            rec.filled += fill.quantity
            target = rec.final if rec.terminal else rec.qty
            self._set_pending(rec, min(max(target - rec.filled, ZERO), rec.pending))
            if rec.terminal and not rec.pending:
                del self._orders[key]
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
        start = (now - offset) // DAY_NS * DAY_NS + offset
        first = self._next_day_ns == 0
        self._next_day_ns = start + DAY_NS
        self._day_start_equity = self._equity()
        for strat in self._strat_tot:
            self._s_day_start[strat] = self._strategy_pnl(strat)
        if not first:
            self._states.clear(self._acct_scope, "daily_loss_limit", "daily_loss_limit: new trading day", now)
            for strat in self._strat_tot:
                self._states.clear(f"strategy:{strat}", "daily_loss_limit", "daily_loss_limit: new trading day", now)


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
