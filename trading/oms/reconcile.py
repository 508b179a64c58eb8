"""Reconciliation of the venue's view of an account with the system of record's (pure, no I/O).

The venue is the truth about what happened there; Postgres is the truth about what we decided.  A
run compares a ``VenueSnapshot`` (open orders, recent trades, balances) with a ``RecordSnapshot`` (our
open orders and the orders the venue mentioned, the fill ids we already have, the balances we expect)
and lists every ``Difference`` with the action it calls for:

  missed_fill       a venue trade of one of our orders that we have no fill for: record it (a fact)
  external_order    open at the venue, client id not ours: record it as external; never canceled here
  external_trade    a trade of an order not ours (after the balance baseline): record it, so the
                    expected balances follow the account
  unknown_at_venue  open with us, not open at the venue, no trade explains it: query that id; the
                    answer (``answers``) is recorded -- REJECTED "not_found_at_venue" or the real status
  status_mismatch   the venue reports another status for one of our orders: record the venue's
  filled_quantity_mismatch  the venue reports more filled than our fills explain (query: the fills
                    come back with the answer) or less than we booked (halted: our books are wrong)
  balance_drift     |venue - expected| beyond tolerance for an asset: REDUCING, or HALTED past
                    ``Tolerance.halt_relative``
  unattributed_trade  a trade of an order the venue names by an id we do not know, while one of our open
                    orders of that symbol and side has no venue id yet (a worker killed before storing it):
                    those orders are queried and the trade waits, never taken for someone else's

The verdict is the most severe difference: ok | reducing | halted, with a reason.  Nothing here ever
trades to fix a difference: with ``fix_with_trades`` the closing orders a drift would need are listed
as ``proposals`` (a record for an operator), and the runner never sends them.

Fill ids follow the adapters' rule: ``stable_id("fill", exchange, venue_trade_id)``.  Orders found at
the venue without a client id of ours are keyed by ``external_id`` (stable across runs).
Notes on what nautilus_trader does and where this differs: docs/research/ccxt-live-venues.md section 5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from trading.records import (
    Fill, Liquidity, NS_PER_S, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, stable_id,
)

ZERO = Decimal(0)
EXTERNAL_STRATEGY = "external"  # strategy of orders and fills found at the venue that nobody here sent
FIX_STRATEGY = "reconciliation"  # strategy of proposed (never sent) fixing orders


class ReconcileInputError(ValueError):
    """A snapshot or a setting that cannot be reconciled (one line naming the problem)."""


class Verdict(str, Enum):
    OK = "ok"
    REDUCING = "reducing"
    HALTED = "halted"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.OK: 0, Verdict.REDUCING: 1, Verdict.HALTED: 2}


class Kind(str, Enum):
    MISSED_FILL = "missed_fill"
    EXTERNAL_ORDER = "external_order"
    EXTERNAL_TRADE = "external_trade"
    UNKNOWN_AT_VENUE = "unknown_at_venue"
    STATUS_MISMATCH = "status_mismatch"
    FILLED_MISMATCH = "filled_quantity_mismatch"
    BALANCE_DRIFT = "balance_drift"
    UNATTRIBUTED_TRADE = "unattributed_trade"


# -- the venue's side (the adapters build these from ccxt's unified structures) ----------------------

@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One order as the venue reports it."""

    client_order_id: str | None  # None: the venue knows no client id (placed by hand on its web site)
    venue_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None
    status: OrderStatus
    filled_quantity: Decimal
    ts: int  # ns, when the venue last changed it (or created it)


@dataclass(frozen=True, slots=True)
class VenueTrade:
    """One execution as the venue reports it (ccxt's fetch_my_trades)."""

    trade_id: str  # the venue's trade id
    client_order_id: str | None  # often absent from trade lists (Binance myTrades): mapped by venue_order_id
    venue_order_id: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity
    ts: int


@dataclass(frozen=True, slots=True)
class VenueSnapshot:
    """What ``LiveVenue.snapshot(since_ns)`` returns: open orders now, trades since ``since_ns``,
    total balances (free + locked) per asset."""

    ts: int
    open_orders: Sequence[VenueOrder] = ()
    trades: Sequence[VenueTrade] = ()
    balances: Mapping[str, Decimal] = field(default_factory=dict)


# -- the system of record's side ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RecordOrder:
    """One order as stored (orders table)."""

    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    venue_order_id: str | None = None
    updated_ts: int = 0  # ns, last change we recorded: an order changed within the settle window is in flight
    external: bool = False


@dataclass(frozen=True, slots=True)
class RecordSnapshot:
    """Our side: every open order of the account plus any order the venue snapshot mentions (by client
    id, external id or venue order id), the fill ids we have among the venue's trades, and the expected
    balances (baseline + every fill after it) -- None before a baseline exists (first start)."""

    account: str
    exchange: str
    orders: Mapping[str, RecordOrder] = field(default_factory=dict)
    fill_ids: frozenset[str] = frozenset()
    expected_balances: Mapping[str, Decimal] | None = None
    baseline_ts: int | None = None


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Balance drift per asset: within ``max(absolute, relative * size)`` it is noise; beyond that the
    account reduces; beyond ``halt_relative * size`` it halts (size: the larger of venue and expected).
    ``settle_ns``: our orders changed this recently are in flight, not compared."""

    relative: Decimal = Decimal("0.001")
    absolute: Decimal = Decimal("1e-8")
    halt_relative: Decimal = Decimal("0.02")
    absolute_per_asset: Mapping[str, Decimal] = field(default_factory=dict)
    settle_ns: int = 5 * NS_PER_S

    def __post_init__(self) -> None:
        for name in ("relative", "absolute", "halt_relative"):
            v = getattr(self, name)
            if not isinstance(v, Decimal) or not v.is_finite() or v < 0:
                raise ReconcileInputError(f"tolerance {name}={v!r} must be a finite Decimal >= 0")
        if self.halt_relative < self.relative:
            raise ReconcileInputError(f"tolerance halt_relative={self.halt_relative} is below "
                                      f"relative={self.relative}: a drift would halt before it reduces")
        if self.settle_ns < 0:
            raise ReconcileInputError(f"tolerance settle_ns={self.settle_ns} must be >= 0")

    def noise(self, asset: str, size: Decimal) -> Decimal:
        return max(self.absolute_per_asset.get(asset, self.absolute), self.relative * size)


# -- the outcome --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Difference:
    kind: Kind
    severity: Verdict  # what it does to the account's state (ok: recorded and done)
    action: str  # record_fill | record_external | record_status | query | none | reduce | halt
    detail: str
    client_order_id: str | None = None
    symbol: str | None = None
    asset: str | None = None
    venue: Decimal | None = None  # the venue's figure (filled quantity, balance)
    ours: Decimal | None = None  # ours
    fill_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Identity across runs (a runner counts how many runs in a row saw it)."""
        return self.kind.value, self.fill_id or self.client_order_id or self.asset or ""

    def to_dict(self) -> dict:
        d = {"kind": self.kind.value, "severity": self.severity.value, "action": self.action, "detail": self.detail}
        for name in ("client_order_id", "symbol", "asset", "fill_id"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        for name in ("venue", "ours"):
            if getattr(self, name) is not None:
                d[name] = str(getattr(self, name))
        return d


@dataclass(frozen=True, slots=True)
class Reconciliation:
    ts: int
    account: str
    verdict: Verdict
    reason: str
    differences: tuple[Difference, ...] = ()
    fills: tuple[Fill, ...] = ()  # to record: missed fills of our orders and external trades
    events: tuple[OrderEvent, ...] = ()  # to record: statuses the venue established
    external_orders: tuple[VenueOrder, ...] = ()  # to record with external=true, keyed by external_id
    queries: tuple[tuple[str, str], ...] = ()  # (client_order_id, symbol) to ask the venue about
    proposals: tuple[OrderRequest, ...] = ()  # only with fix_with_trades; never sent by the runner
    expected_balances: Mapping[str, Decimal] | None = None  # after this run's fills

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.differences:
            out[d.kind.value] = out.get(d.kind.value, 0) + 1
        return out


def fill_id_of(exchange: str, trade_id: str) -> str:
    """The fill id an adapter gives the venue trade ``trade_id`` (the rule of the live venue port)."""
    return stable_id("fill", exchange, trade_id)


def external_id(exchange: str, order: VenueOrder | VenueTrade) -> str:
    """Our key of an order not ours: its client id when the venue has one, else one derived from the
    venue's order id (stable, so the next run finds it recorded)."""
    return order.client_order_id or stable_id("external", exchange, order.venue_order_id)


def candidates(venue: VenueSnapshot, exchange: str) -> tuple[set[str], set[str], set[str]]:
    """(client ids, venue order ids, fill ids) the snapshot mentions: what the record side must look up."""
    cids: set[str] = set()
    vids: set[str] = set()
    for o in (*venue.open_orders, *venue.trades):
        cids.add(external_id(exchange, o))
        vids.add(o.venue_order_id)
    return cids, vids, {fill_id_of(exchange, t.trade_id) for t in venue.trades}


def balance_effect(fill: Fill) -> dict[str, Decimal]:
    """What one spot fill does to the account's balances: base +/- quantity, quote -/+ notional, the
    fee out of its own currency."""
    base, _, quote = fill.symbol.partition("/")
    if not quote:
        raise ReconcileInputError(f"fill {fill.fill_id}: symbol {fill.symbol!r} is not BASE/QUOTE")
    sign = Decimal(fill.side.sign)
    out = {base: sign * fill.quantity, quote: -sign * fill.price * fill.quantity}
    if fill.fee:
        out[fill.fee_currency] = out.get(fill.fee_currency, ZERO) - fill.fee
    return out


# -- the comparison -----------------------------------------------------------------------------------

def reconcile(venue: VenueSnapshot, ours: RecordSnapshot, tolerance: Tolerance | None = None, *,
              answers: Mapping[str, OrderEvent] | None = None, answer_fills: Iterable[Fill] = (),
              check_balances: bool = True, skip_recent_trades: bool = False,
              fix_with_trades: bool = False) -> Reconciliation:
    """Compare the venue with our records.  ``answers``: the venue's answers to queries of client ids
    (OrderEvent from ``LiveVenue.query`` via ``poll``), ``answer_fills`` the fills that came with them.
    ``check_balances`` off: orders and trades only (the frequent check).  ``skip_recent_trades``: trades
    younger than the settle window are left to the stream (a periodic run races it), their orders too."""
    tol = tolerance or Tolerance()
    answers = answers or {}
    acct, ex, now = ours.account, ours.exchange, venue.ts
    diffs: list[Difference] = []
    fills: list[Fill] = []
    events: list[OrderEvent] = []
    queries: list[tuple[str, str]] = []
    externals: list[VenueOrder] = []

    # venue order id -> our key: trade lists often carry only the venue's order id, and an order the venue
    # lists without a client id may still be one of ours (the venue's id is the one it cannot change)
    by_vid: dict[str, str] = {o.venue_order_id: o.client_order_id for o in ours.orders.values() if o.venue_order_id}
    # the venue's answers about our orders name their venue ids (a worker killed before it stored them) and
    # their fills: what maps a trade of theirs to them instead of taking it for someone else's
    for cid, ans in answers.items():
        if ans.venue_order_id and cid in ours.orders:
            by_vid.setdefault(ans.venue_order_id, cid)
    answered_fill = {f.fill_id: f.client_order_id for f in answer_fills if f.client_order_id in ours.orders}
    # our open orders without a venue id yet, by (symbol, side): a trade of an order we cannot name may be theirs
    unnamed: dict[tuple[str, Side], list[str]] = {}
    for o in ours.orders.values():
        if o.status.is_open and not o.venue_order_id and not o.external:
            unnamed.setdefault((o.symbol, o.side), []).append(o.client_order_id)

    def key_of(vo: VenueOrder) -> str:
        return by_vid.get(vo.venue_order_id) or external_id(ex, vo)

    for vo in venue.open_orders:
        by_vid.setdefault(vo.venue_order_id, external_id(ex, vo))

    # 1. trades we have no fill for
    seen = set(ours.fill_ids)
    missed: dict[str, Decimal] = {}
    recent: set[str] = set()
    in_flight: list[VenueTrade] = []  # skipped recent trades: not recorded yet, already in the venue's balances
    for t in sorted(venue.trades, key=lambda t: (t.ts, t.trade_id)):
        fid = fill_id_of(ex, t.trade_id)
        if fid in seen:
            continue
        cid = t.client_order_id or by_vid.get(t.venue_order_id) or answered_fill.get(fid) or external_id(ex, t)
        if skip_recent_trades and now - t.ts < tol.settle_ns:
            recent.add(cid)
            in_flight.append(t)
            continue
        maybe = unnamed.get((t.symbol, t.side)) if cid not in ours.orders else None
        if maybe:
            # not recorded as someone else's while one of ours may own it: those orders are asked about, and
            # the trade is recorded once the venue has named them (balances compare as if it were)
            in_flight.append(t)
            queries.extend((owner, t.symbol) for owner in maybe)
            diffs.append(Difference(Kind.UNATTRIBUTED_TRADE, Verdict.OK, "query",
                                    f"venue trade {t.trade_id} of order {t.venue_order_id} ({t.side.value} "
                                    f"{t.quantity} {t.symbol} @ {t.price}) may be one of our orders the venue has "
                                    f"not named yet ({', '.join(maybe[:3])}): asked", maybe[0], t.symbol,
                                    fill_id=fid, venue=t.quantity))
            continue
        seen.add(fid)
        rec = ours.orders.get(cid)
        if rec is not None and not rec.external:
            f = Fill(fid, cid, acct, rec.strategy, ex, t.symbol, t.side, t.price, t.quantity, t.fee, t.fee_currency,
                     t.liquidity, t.ts)
            fills.append(f)
            missed[cid] = missed.get(cid, ZERO) + t.quantity
            diffs.append(Difference(Kind.MISSED_FILL, Verdict.OK, "record_fill",
                                    f"venue trade {t.trade_id} of {cid} ({t.side.value} {t.quantity} {t.symbol} @ "
                                    f"{t.price}) had no fill here", cid, t.symbol, fill_id=fid, venue=t.quantity))
        elif ours.baseline_ts is not None and t.ts > ours.baseline_ts:
            # not ours, after the baseline: the balances moved with it, so the books must too
            fills.append(Fill(fid, cid, acct, EXTERNAL_STRATEGY, ex, t.symbol, t.side, t.price, t.quantity, t.fee,
                              t.fee_currency, t.liquidity, t.ts))
            diffs.append(Difference(Kind.EXTERNAL_TRADE, Verdict.OK, "record_fill",
                                    f"venue trade {t.trade_id} of order {t.venue_order_id} not ours "
                                    f"({t.side.value} {t.quantity} {t.symbol} @ {t.price})", cid, t.symbol,
                                    fill_id=fid, venue=t.quantity))
        # a trade not ours before any baseline is history the baseline balances already contain
    for f in answer_fills:
        if f.fill_id not in seen and f.client_order_id in ours.orders:
            seen.add(f.fill_id)
            fills.append(f)
            missed[f.client_order_id] = missed.get(f.client_order_id, ZERO) + f.quantity
            diffs.append(Difference(Kind.MISSED_FILL, Verdict.OK, "record_fill",
                                    f"fill {f.fill_id} of {f.client_order_id} reported with the query's answer",
                                    f.client_order_id, f.symbol, fill_id=f.fill_id, venue=f.quantity))

    def event(rec: RecordOrder, status: OrderStatus, filled: Decimal, reason: str, vid: str | None) -> OrderEvent:
        return OrderEvent(rec.client_order_id, acct, rec.strategy, rec.symbol, status, filled,
                          max(rec.quantity - filled, ZERO), now, reason, vid or rec.venue_order_id)

    def settling(rec: RecordOrder) -> bool:
        return now - rec.updated_ts < tol.settle_ns or rec.client_order_id in recent

    # 2. orders open at the venue
    open_at_venue: set[str] = set()
    for vo in venue.open_orders:
        key = key_of(vo)
        open_at_venue.add(key)
        rec = ours.orders.get(key)
        if rec is None:
            externals.append(vo)
            diffs.append(Difference(Kind.EXTERNAL_ORDER, Verdict.OK, "record_external",
                                    f"order {vo.venue_order_id} ({vo.side.value} {vo.quantity} {vo.symbol}) open at the"
                                    f" venue, not ours: recorded as external, not canceled", key, vo.symbol,
                                    venue=vo.quantity))
            continue
        filled = rec.filled_quantity + missed.get(key, ZERO)
        if vo.filled_quantity < filled:
            diffs.append(Difference(Kind.FILLED_MISMATCH, Verdict.HALTED, "halt",
                                    f"{key}: the venue reports {vo.filled_quantity} filled, we booked {filled}",
                                    key, vo.symbol, venue=vo.filled_quantity, ours=filled))
        elif vo.filled_quantity > filled:
            if not settling(rec):
                queries.append((key, rec.symbol))
                diffs.append(Difference(Kind.FILLED_MISMATCH, Verdict.REDUCING, "query",
                                        f"{key}: the venue reports {vo.filled_quantity} filled, our fills explain "
                                        f"{filled}", key, vo.symbol, venue=vo.filled_quantity, ours=filled))
        elif vo.status is not rec.status and not (rec.status is OrderStatus.CANCEL_PENDING or settling(rec)):
            # CANCEL_PENDING: our cancel is on its way, the OMS follows it; the venue still showing it is normal
            events.append(event(rec, vo.status, filled, "reconciled", vo.venue_order_id))
            diffs.append(Difference(Kind.STATUS_MISMATCH, Verdict.OK, "record_status",
                                    f"{key}: ours {rec.status.value}, the venue's {vo.status.value}", key, vo.symbol))
        elif filled != rec.filled_quantity:
            events.append(event(rec, vo.status, filled, "reconciled_fill", vo.venue_order_id))

    # 3. our orders the venue does not show open, and known orders that traded
    for key, rec in sorted(ours.orders.items()):
        if key in open_at_venue or rec.external:
            continue
        filled = rec.filled_quantity + missed.get(key, ZERO)
        ans = answers.get(key)
        if filled >= rec.quantity and (rec.status is not OrderStatus.FILLED or filled != rec.filled_quantity):
            events.append(event(rec, OrderStatus.FILLED, filled, "reconciled", ans.venue_order_id if ans else None))
            if rec.status is not OrderStatus.FILLED:
                diffs.append(Difference(Kind.STATUS_MISMATCH, Verdict.OK, "record_status",
                                        f"{key}: ours {rec.status.value}, its trades at the venue fill it", key,
                                        rec.symbol))
        elif not rec.status.is_open:
            if filled != rec.filled_quantity:
                events.append(event(rec, rec.status, filled, "reconciled_fill", None))
        elif ans is not None:
            events.append(OrderEvent(key, acct, rec.strategy, rec.symbol, ans.status, ans.filled_quantity,
                                     max(rec.quantity - ans.filled_quantity, ZERO), ans.ts, ans.reason,
                                     ans.venue_order_id or rec.venue_order_id))
            diffs.append(Difference(Kind.UNKNOWN_AT_VENUE, Verdict.OK, "record_status",
                                    f"{key}: not open at the venue; the venue answered {ans.status.value}"
                                    + (f" ({ans.reason})" if ans.reason else ""), key, rec.symbol))
        elif not settling(rec):
            queries.append((key, rec.symbol))
            diffs.append(Difference(Kind.UNKNOWN_AT_VENUE, Verdict.REDUCING, "query",
                                    f"{key}: {rec.status.value} here, not open at the venue, no trade explains it",
                                    key, rec.symbol))
            if filled != rec.filled_quantity:
                status = rec.status if rec.status is OrderStatus.CANCEL_PENDING else OrderStatus.PARTIALLY_FILLED
                events.append(event(rec, status, filled, "reconciled_fill", None))

    # 4. balances
    expected = None
    if ours.expected_balances is not None:
        expected = dict(ours.expected_balances)
        for f in fills:
            if ours.baseline_ts is None or f.ts > ours.baseline_ts:
                for asset, q in balance_effect(f).items():
                    expected[asset] = expected.get(asset, ZERO) + q
    proposals: list[OrderRequest] = []
    if check_balances and expected is not None:
        compared = dict(expected)
        for t in in_flight:  # the stream is about to record them: compare as if it had
            if ours.baseline_ts is None or t.ts > ours.baseline_ts:
                f = Fill("", "", acct, "", ex, t.symbol, t.side, t.price, t.quantity, t.fee, t.fee_currency,
                         t.liquidity, t.ts)
                for asset, q in balance_effect(f).items():
                    compared[asset] = compared.get(asset, ZERO) + q
        for asset in sorted(set(compared) | set(venue.balances)):
            v, e = venue.balances.get(asset, ZERO), compared.get(asset, ZERO)
            drift = v - e
            size = max(abs(v), abs(e))
            if abs(drift) <= tol.noise(asset, size):
                continue
            halt = abs(drift) > tol.halt_relative * size
            diffs.append(Difference(Kind.BALANCE_DRIFT, Verdict.HALTED if halt else Verdict.REDUCING,
                                    "halt" if halt else "reduce",
                                    f"{asset}: venue {v}, expected {e} (drift {drift:+}, "
                                    f"{'beyond' if halt else 'within'} the halt threshold "
                                    f"{tol.halt_relative * 100}%)", asset=asset, venue=v, ours=e))
            if fix_with_trades:
                p = _fix_proposal(asset, drift, venue, ours, now)
                if p is not None:
                    proposals.append(p)

    worst, reason = verdict_of(diffs)
    return Reconciliation(now, acct, worst, reason, tuple(diffs), tuple(fills), tuple(events), tuple(externals),
                          tuple(dict.fromkeys(queries)), tuple(proposals), expected)


def verdict_of(diffs: Iterable[Difference]) -> tuple[Verdict, str]:
    """The worst severity among ``diffs`` and the reason: the details of the differences at that level."""
    diffs = list(diffs)
    worst = max((d.severity for d in diffs), key=lambda s: s.severity, default=Verdict.OK)
    if worst is Verdict.OK:
        return worst, f"{len(diffs)} difference(s) recorded" if diffs else "in agreement"
    serious = [d.detail for d in diffs if d.severity is worst]
    return worst, "; ".join(serious[:5]) + (f"; and {len(serious) - 5} more" if len(serious) > 5 else "")


def _fix_proposal(asset: str, drift: Decimal, venue: VenueSnapshot, ours: RecordSnapshot,
                  now: int) -> OrderRequest | None:
    """A market order that would bring a base asset back to its expected balance (venue above expected:
    sell the excess).  Only a record for an operator; None when no traded symbol has that base."""
    symbols = sorted({o.symbol for o in ours.orders.values()} | {o.symbol for o in venue.open_orders}
                     | {t.symbol for t in venue.trades})
    symbol = next((s for s in symbols if s.partition("/")[0] == asset), None)
    if symbol is None:
        return None
    side = Side.SELL if drift > 0 else Side.BUY
    return OrderRequest(stable_id("recon_fix", ours.account, asset, now), ours.account, FIX_STRATEGY, ours.exchange,
                        symbol, side, OrderType.MARKET, abs(drift), ts=now)
