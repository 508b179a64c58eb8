"""BarFillVenue: the paper venue filling against bars.

Bar mode (``fill_mode="bar"``) -- conventions, for bar b delivered after the order reached the venue
(with zero latency: any bar delivered after submit; with latency: bars whose open ts >= arrival ts):
  * market: at b.open, moved against the order by ``ImpactModel`` (volatility = b's (high-low)/open); taker.
  * limit buy L (sell mirrors): if b.open <= L it fills at b.open (the bar opens through the limit); else if
    b.low < L (or == L when ``touch_fills``) it fills at L.  Taker on the first bar after arrival (the
    order arrived marketable), maker on later bars.  No impact: the limit caps the price.
  * IOC / FOK limits only get the first bar's open; otherwise they are canceled.
  * post-only: rejected at arrival when it would cross the last close seen.
  * stop buy S: triggers when b.high >= S, at b.open if b opens at/above S else at S; a stop then fills at
    the trigger price plus impact (taker); a stop-limit fills at the trigger price when that is within its
    limit, else it rests as a limit from the next bar (the path inside a bar is unknown).
  * ``max_participation`` (optional) caps fills at that fraction of each bar's volume (shared by all
    orders of the symbol, in time priority); what is left waits for the next bar (IOC: canceled, FOK:
    canceled unless all fits).  Without it bars fill orders completely.
"""

from __future__ import annotations

from decimal import Decimal

from trading.records import Bar, Fill, Liquidity, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from trading.venue.paper import (
    _OPEN, _ZERO, CANCEL_FOK, CANCEL_IOC, REJECT_POST_ONLY_CROSS, REPLACE_REJECTED_POST_ONLY, REPLACED, PaperVenue, _check_bar,
    _Working,
)


class BarFillVenue(PaperVenue):
    """Fills working orders against each bar (``on_bar``)."""

    fill_mode = "bar"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_close: dict[str, Decimal] = {}  # post-only orders must not cross it

    def on_bar(self, bar: Bar) -> list[OrderEvent | Fill]:
        """Bar mode: fill the symbol's working orders against this bar (see the module docstring)."""
        _check_bar(bar)
        out: list = []
        used = [_ZERO]  # volume taken from this bar by our orders (for max_participation)
        for w in list(self._open.get(bar.symbol, {}).values()):
            if w.status not in _OPEN:
                continue
            if not w.arrived:
                if bar.exchange_ts < w.arrival_ts:
                    continue
                if not self._arrive_bar(w, out):
                    continue
            self._fill_on_bar(w, bar, used, out)
            w.bars_seen += 1
        self._last_close[bar.symbol] = bar.close
        return out

    def _replace(self, w: _Working, new_req: OrderRequest, remaining: Decimal, keeps_priority: bool,
                 ts: int) -> list[OrderEvent | Fill]:
        if w.req.post_only and self._bar_would_cross(new_req):
            return [self._event(w, w.status, ts, REPLACE_REJECTED_POST_ONLY)]
        self._set_request(w, new_req, remaining, keeps_priority)
        if not keeps_priority:
            w.bars_seen = 0
        return [self._event(w, w.status, ts, REPLACED)]

    def _bar_would_cross(self, r: OrderRequest) -> bool:
        last = self._last_close.get(r.symbol)
        return last is not None and (r.price >= last if r.side is Side.BUY else r.price <= last)

    def _arrive_bar(self, w: _Working, out: list) -> bool:
        """The order reaches the venue; False if it is rejected there."""
        if w.req.post_only and self._bar_would_cross(w.req):
            out.append(self._close(w, OrderStatus.REJECTED, w.arrival_ts, REJECT_POST_ONLY_CROSS))
            return False
        w.arrived = True
        w.status = OrderStatus.ACKNOWLEDGED
        out.append(self._event(w, w.status, w.arrival_ts))
        return True

    _arrive = _arrive_bar

    def _fill_on_bar(self, w: _Working, b: Bar, used: list, out: list) -> None:
        r = w.req
        buy = r.side is Side.BUY
        ts = b.exchange_ts
        ot = r.order_type
        if ot in (OrderType.STOP, OrderType.STOP_LIMIT) and not w.triggered:
            s = r.stop_price
            if not (b.high >= s if buy else b.low <= s):
                return
            w.triggered = True
            trig = b.open if (b.open >= s if buy else b.open <= s) else s
            if ot is OrderType.STOP:
                self._take(w, b, trig, Liquidity.TAKER, True, used, out)
            elif (trig <= r.price) if buy else (trig >= r.price):
                self._take(w, b, trig, Liquidity.TAKER, False, used, out)
            elif r.time_in_force is not TimeInForce.GTC:
                out.append(self._close(w, OrderStatus.CANCELED, ts, CANCEL_IOC if r.time_in_force is TimeInForce.IOC else CANCEL_FOK))
            else:
                w.bars_seen = 0  # rests as a limit from the next bar (incremented by the caller)
            return
        if ot in (OrderType.MARKET, OrderType.STOP):
            self._take(w, b, b.open, Liquidity.TAKER, True, used, out)
            return
        limit = r.price
        first = w.bars_seen == 0 and not w.triggered
        if (b.open <= limit) if buy else (b.open >= limit):
            self._take(w, b, b.open, Liquidity.TAKER if first else Liquidity.MAKER, False, used, out)
        elif r.time_in_force is not TimeInForce.GTC:
            out.append(self._close(w, OrderStatus.CANCELED, ts, CANCEL_IOC if r.time_in_force is TimeInForce.IOC else CANCEL_FOK))
        elif (b.low < limit or (self.touch_fills and b.low == limit)) if buy else (
                b.high > limit or (self.touch_fills and b.high == limit)):
            self._take(w, b, limit, Liquidity.MAKER, False, used, out)

    def _take(self, w: _Working, b: Bar, price: Decimal, liq: Liquidity, impact: bool, used: list, out: list) -> None:
        """Fill as much as the bar allows at ``price`` (moved by impact if asked); apply IOC/FOK to the rest."""
        r = w.req
        qty = w.remaining
        if self.max_participation is not None:
            lot = self._instrument(r.symbol).lot_size
            room = self.max_participation * b.volume - used[0]
            qty = min(qty, max(_ZERO, (room / lot).to_integral_value(rounding="ROUND_FLOOR") * lot))
        tif = r.time_in_force
        if tif is TimeInForce.FOK and qty < w.remaining:
            out.append(self._close(w, OrderStatus.CANCELED, b.exchange_ts, CANCEL_FOK))
            return
        if qty > 0:
            if impact:
                vol = float((b.high - b.low) / b.open) if b.open > 0 else 0.0
                price = self.impact.fill_price(price, r.side is Side.BUY, qty, b.volume, vol)
            used[0] += qty
            self._fill(w, price, qty, liq, b.exchange_ts, out)
        if w.remaining > 0 and tif is TimeInForce.IOC:
            out.append(self._close(w, OrderStatus.CANCELED, b.exchange_ts, CANCEL_IOC))
