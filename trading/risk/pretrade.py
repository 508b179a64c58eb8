"""The pre-trade check: every rule an order must pass before it reaches the venue, in the order of
docs/RISK.md, and the bookkeeping of an approved order.  Part of RiskEngine (a mixin over its state)."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from trading.records import NS_PER_S, OrderRequest, OrderType, Side
from trading.risk.book import Leg, Totals, ZERO
from trading.risk.decisions import APPROVED, reject, RiskDecision
from trading.risk.limits import ExposureLimits, StrategyLimits
from trading.risk.orders import bounded_add, OpenOrder, RestingPrices
from trading.risk.states import HALTED, REDUCING

TOL = 1.0 + 1e-9  # float limit comparisons: "exactly at the limit" must pass despite rounding


class PreTradeChecks:
    """RiskEngine.check and what it needs (state lives on RiskEngine)."""

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
            return reject("wrong_account", f"order account {order.account!r} is not {self.account!r}")
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
                return reject("account_halted", self._cause_text(self._acct_scope))
            sscope = f"strategy:{strat}"
            s = states.get(sscope)
            if s is HALTED:
                return reject("strategy_halted", self._cause_text(sscope))
            yscope = f"symbol:{sym}"
            if yscope in states:
                self._states.expire(yscope, now)
                if yscope in states:
                    return reject("symbol_halted", self._cause_text(yscope))
            if a is REDUCING and not (qty_ok and leg is not None and leg.reduces(buy, qty)):
                return reject("account_reducing", self._cause_text(self._acct_scope))
            if s is REDUCING and not (qty_ok and sleg is not None and sleg.reduces(buy, qty)):
                return reject("strategy_reducing", self._cause_text(sscope))

        # 2. restricted symbols
        if sym in lim.restricted_symbols:
            return reject("restricted_symbol", f"{sym} is restricted")

        # 3. quantity and price sanity, reference price
        if not qty_ok:
            return reject("invalid_quantity", f"quantity {qty!r} must be a positive finite Decimal")
        r = self._rules.get(sym) or self._rules_for(sym)
        if r.lot is not None and qty % r.lot:
            return reject("lot_size", f"quantity {qty} is not a multiple of lot size {r.lot}")
        otype = order.order_type
        price = order.price
        if price is not None:
            if type(price) is not Decimal or not price.is_finite() or price <= 0:
                return reject("invalid_price", f"price {price!r} must be a positive finite Decimal")
            if r.tick is not None and price % r.tick:
                return reject("tick_size", f"price {price} is not a multiple of tick size {r.tick}")
        elif otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT:
            return reject("invalid_price", f"{otype.value} order needs a price")
        if otype is OrderType.STOP or otype is OrderType.STOP_LIMIT:
            sp = order.stop_price
            if type(sp) is not Decimal or not sp.is_finite() or sp <= 0:
                return reject("invalid_price", f"stop_price {sp!r} must be a positive finite Decimal")
            if r.tick is not None and sp % r.tick:
                return reject("tick_size", f"stop_price {sp} is not a multiple of tick size {r.tick}")
        ref = self._mark.get(sym)
        if ref is None:
            return reject("no_reference_price", f"no valid price seen for {sym}")
        age = now - self._mark_ts[sym]
        if age > self._stale_ns:
            return reject("stale_price", f"last valid price of {sym} is {age / NS_PER_S:.1f}s old")
        px = float(price) if price is not None else ref
        qf = float(qty)
        notional = qf * px
        if r.min_notional is not None and notional < r.min_notional:
            return reject("min_notional", f"notional {notional:.2f} < {r.min_notional}")

        # 4. price collar (fat finger) against the last trade / mid
        if price is not None and r.collar is not None and abs(px - ref) * 1e4 > r.collar * ref * TOL:
            return reject("price_collar", f"price {price} is {abs(px - ref) / ref * 1e4:.1f} bps from "
                                           f"reference {ref} (collar {r.collar} bps)")

        # 5. order size (scaled by the drawdown size multiplier unless the order reduces)
        reducing = leg is not None and leg.reduces(buy, qty)
        mult = 1.0 if reducing else min(self._mult, self._s_mult.get(strat, 1.0))
        if r.max_qty is not None:
            if qty > r.max_qty if mult == 1.0 else qf > float(r.max_qty) * mult * TOL:
                return reject("max_order_quantity", f"quantity {qty} > {r.max_qty} x {mult}")
        if r.max_notional is not None and notional > r.max_notional * mult * TOL:
            return reject("max_order_notional", f"notional {notional:.2f} > {r.max_notional} x {mult}")

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
                return reject("max_position", f"{sym} position could reach {after} (limit {cap})")

        # 7. gross / net exposure per account, strategy, asset, sector (worst case, at the mark)
        d = deltas(leg, buy, qf, ref)
        failed = self._exposure(self._acct, d, lim.account, "account")
        if failed:
            return failed
        if r.asset_limits is not None:
            failed = self._exposure(r.totals[1], d, r.asset_limits, f"asset {r.base}")
            if failed:
                return failed
        if self._sector_limits_on:
            if r.sector is None:
                return reject("no_sector", f"{sym} has no sector in sector_map but sector limits are configured")
            if r.sector_limits is not None:
                failed = self._exposure(r.totals[2], d, r.sector_limits, f"sector {r.sector}")
                if failed:
                    return failed
        sl = self._strat_rules.get(strat) or self._strategy_limits(strat)
        if sl.max_gross_exposure is not None or sl.max_net_exposure is not None:
            st = self._strat_tot.get(strat) or Totals()
            failed = self._exposure(st, deltas(sleg, buy, qf, ref), sl, f"strategy {strat}")
            if failed:
                return failed

        # 8. open orders
        mo = lim.account.max_open_orders
        if mo is not None and self._open_count + 1 > mo:
            return reject("max_open_orders", f"account has {self._open_count} open orders (limit {mo})")
        if sl.max_open_orders is not None and self._s_open[strat] + 1 > sl.max_open_orders:
            return reject("max_open_orders",
                           f"strategy {strat} has {self._s_open[strat]} open orders (limit {sl.max_open_orders})")

        # 9. order rate per strategy (sliding windows)
        if sl.max_orders_per_second is not None:
            n = window_count(self._rate_s, strat, now - NS_PER_S)
            if n + 1 > sl.max_orders_per_second:
                return reject("max_orders_per_second", f"strategy {strat}: {n} orders in the last second")
        if sl.max_orders_per_minute is not None:
            n = window_count(self._rate_m, strat, now - 60 * NS_PER_S)
            if n + 1 > sl.max_orders_per_minute:
                return reject("max_orders_per_minute", f"strategy {strat}: {n} orders in the last minute")

        # 10. duplicates: same client id, or an identical order within the window
        if order.client_order_id in self._seen_ids:
            return reject("duplicate_client_order_id", f"client order id {order.client_order_id} already used")
        rq = self._recent_q
        while rq and now - rq[0][0] >= self._dup_ns:
            ts0, key0 = rq.popleft()
            if self._recent.get(key0) == ts0:
                del self._recent[key0]
        key = (strat, sym, buy, qty, price)
        t0 = self._recent.get(key)
        if t0 is not None and now - t0 < self._dup_ns:
            return reject("duplicate_order", f"identical order {key} {(now - t0) / NS_PER_S:.3f}s ago")

        # 11. self-trade prevention against our own resting orders (market orders cross everything)
        if otype is OrderType.LIMIT or otype is OrderType.MARKET:
            other = (self._asks if buy else self._bids).get(sym)
            if other is not None and other.best is not None and (
                    price is None or (price >= other.best if buy else price <= other.best)):
                return reject("self_trade", f"{order.side.value} {price or 'market'} would cross our own resting "
                                             f"{'sell' if buy else 'buy'} at {other.best}")

        # 12. margin and leverage (only orders that add to the account's worst-case gross)
        reserve = 0.0
        if d[0] > 0:
            rate = lim.account.margin_rate
            reserve = notional * rate
            equity = self._cash_f + self._acct.mv
            available = equity - self._acct.gp * rate - self._reserved
            if reserve > available * TOL if available > 0 else reserve > 0:
                return reject("insufficient_margin", f"needs {reserve:.2f}, available {available:.2f}")
            ml = lim.account.max_leverage
            if ml is not None:
                gross = self._acct.g + d[0]
                if equity <= 0 or gross > ml * equity * TOL:
                    return reject("max_leverage", f"gross {gross:.2f} / equity {equity:.2f} > {ml}")

        self._register(order, now, reserve / qf)
        return None

    def _exposure(self, t: Totals, d: tuple[float, float, float], lim: ExposureLimits | StrategyLimits,
                  who: str) -> RiskDecision | None:
        """Reject if the order takes a worst-case exposure beyond its limit and makes it larger."""
        dg, dnl, dns = d
        mg = lim.max_gross_exposure
        if mg is not None and dg > 0 and t.g + dg > mg * TOL:
            return reject("max_gross_exposure", f"{who}: gross exposure {t.g + dg:.2f} > {mg}")
        mn = lim.max_net_exposure
        if mn is not None:
            after = max(abs(t.nl + dnl), abs(t.ns + dns))
            if after > mn * TOL and after > t.net:
                return reject("max_net_exposure", f"{who}: net exposure {after:.2f} > {mn}")
        return None

    def _register(self, order: OrderRequest, now: int, reserve_per_unit: float) -> None:
        cid = order.client_order_id
        rec = OpenOrder(order, reserve_per_unit)
        self._orders[cid] = rec
        self._open_count += 1
        self._s_open[order.strategy] += 1
        self._set_pending(rec, rec.qty)
        strat = order.strategy
        self._rate_s.setdefault(strat, deque()).append(now)
        self._rate_m.setdefault(strat, deque()).append(now)
        bounded_add(self._seen_ids, cid)
        key = (strat, order.symbol, rec.buy, order.quantity, order.price)
        self._recent[key] = now
        self._recent_q.append((now, key))
        if rec.resting:
            book = self._bids if rec.buy else self._asks
            book.setdefault(order.symbol, RestingPrices(rec.buy)).add(order.price)
        if order.exchange:
            self._exchange[order.symbol] = order.exchange


def deltas(leg: Leg | None, buy: bool, qf: float, mark: float) -> tuple[float, float, float]:
    """Change of a leg's worst-case (gross, net long, net short) if an order of ``qf`` is added."""
    if leg is None:
        x = qf * mark
        return (x, x, 0.0) if buy else (x, 0.0, -x)
    if buy:
        nl = (leg.qf + leg.bf + qf) * mark
        return max(abs(nl), abs(leg.ns)) - leg.g, nl - leg.nl, 0.0
    ns = (leg.qf - leg.sf - qf) * mark
    return max(abs(leg.nl), abs(ns)) - leg.g, 0.0, ns - leg.ns


def window_count(windows: dict[str, deque[int]], key: str, horizon: int) -> int:
    dq = windows.get(key)
    if dq is None:
        return 0
    while dq and dq[0] <= horizon:
        dq.popleft()
    return len(dq)
