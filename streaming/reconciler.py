"""Reconciliation with the venue, run by the worker: once at start (fail closed) and periodically.

At start (``reconcile_at_start``), before the worker trades:
  1. the account is HALTED (cause ``reconciliation_start``), so nothing trades whatever calls the Trader;
  2. the venue's snapshot (``LiveVenue.snapshot(since)``) is compared with Postgres (trading.oms.reconcile);
     orders it does not show are queried (``LiveVenue.query``) and their answers awaited (``poll``);
  3. the outcome is stored (storage.reconcile: missed fills, statuses, external orders, the run's row, an
     audit row when not ok, the balance baseline at the first successful start) and booked in the Trader;
  4. ok lifts the start hold; reducing / halted hold the account there (causes ``reconciliation`` /
     ``reconciliation_halt``) until an operator resumes it; the change is a risk transition, so it reaches
     the audit log and the risk.alerts topic with the Trader's next drain.  Any exception: HALTED, with
     the reason.

Periodically (``Reconciler.run``): open orders and recent trades every ``recon_orders_interval_s``,
balances too every ``recon_balances_interval_s``.  Missed fills are recorded and booked at once (facts);
a difference that would change the account's state must be seen in ``recon_confirmations`` runs in a
row (a race between the snapshot and the stream is not a mismatch); unknown orders are queried, the
answer reaching the OMS through ``poll`` like any report.  Nothing is ever traded to fix a difference.

Wiring (the worker, sandbox/live only), after ``trader.restore(...)`` and ``await venue.start()`` and before
the agent feeds any tick: ``outcome, rc, task = await start_and_watch(venue, trader, ReconStore(url,
mode=settings.mode, exchange=venue.exchange_name), ReconConfig.from_settings(settings), lock=worker.lock)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from trading.oms.reconcile import (Kind, reconcile, Reconciliation, RecordSnapshot, Tolerance, Verdict,
                                   VenueSnapshot, verdict_of)
from trading.records import Fill, NS_PER_S, OrderEvent
from trading.risk import StateTransition, TradingState

if TYPE_CHECKING:
    import sqlalchemy as sa

    from trading.risk import RiskEngine

log = logging.getLogger(__name__)

WHO = "reconciler"
START, REDUCE, HALT = "reconciliation_start", "reconciliation", "reconciliation_halt"  # causes in the risk engine
_LEVEL = {Verdict.REDUCING: TradingState.REDUCING, Verdict.HALTED: TradingState.HALTED}


class SnapshotVenue(Protocol):
    """What reconciliation needs of a live venue (trading.ports.LiveVenue; docs /work PLAN)."""

    account: str

    async def snapshot(self, since_ns: int) -> VenueSnapshot: ...

    def query(self, client_order_id: str, symbol: str, ts: int) -> None: ...

    def poll(self) -> Sequence[OrderEvent | Fill]: ...


@dataclass(frozen=True)
class ReconConfig:
    tolerance: Tolerance = field(default_factory=Tolerance)
    orders_interval_s: float = 5.0
    balances_interval_s: float = 60.0
    confirmations: int = 2
    query_timeout_s: float = 10.0
    lookback_s: float = 86400.0
    overlap_s: float = 60.0  # each periodic snapshot re-reads this much before the previous one
    max_failures: int = 10
    fix_with_trades: bool = False
    resolve_grace_s: float = 30.0  # an order the OMS is still establishing counts as a difference after this

    @classmethod
    def from_settings(cls, s: Any) -> "ReconConfig":
        from trading.oms.reconcile import ReconcileInputError

        try:
            tol = Tolerance(relative=Decimal(str(s.recon_balance_tolerance)),
                            absolute=Decimal(str(s.recon_balance_abs_tolerance)),
                            halt_relative=Decimal(str(s.recon_balance_halt)),
                            settle_ns=int(s.recon_settle_s * NS_PER_S))
        except ReconcileInputError as exc:
            raise ReconcileInputError(f"TRADELOOP_RECON_BALANCE_*: {exc}") from None
        return cls(tol, s.recon_orders_interval_s, s.recon_balances_interval_s, s.recon_confirmations,
                   s.recon_query_timeout_s, s.recon_lookback_s, max_failures=s.recon_max_failures,
                   fix_with_trades=s.recon_fix_with_trades, resolve_grace_s=s.recon_resolve_grace_s)


# -- what the runner acts on ----------------------------------------------------------------------------

class Target:
    """The account's risk state and books: a Trader (``Target.of(trader)``) or a bare RiskEngine."""

    def __init__(self, risk: RiskEngine, *, apply: Callable[[list], None] | None = None,
                 alert: Callable[[StateTransition], None] | None = None,
                 set_time: Callable[[int], None] | None = None,
                 journals: Callable[[str], bool] | None = None,
                 in_flight: Callable[[], dict[str, float]] | None = None) -> None:
        self.risk, self.account = risk, risk.account
        self._apply, self._alert, self._set_time = apply, alert, set_time
        self.journals = journals or (lambda cid: False)  # does the target's OMS journal this order itself?
        self.in_flight = in_flight or dict  # orders its OMS is establishing -> seconds since it began

    @classmethod
    def of(cls, obj: Any) -> "Target":
        if isinstance(obj, Target):
            return obj
        if hasattr(obj, "apply_reconciled"):  # streaming.trader.Trader
            def set_time(ts: int) -> None:
                # the Trader's clock is event time: keep it, unless no tick has come yet
                obj.clock.set(max(obj.clock.ts, obj.last_tick_ns or 0) or ts)
            return cls(obj.risk, apply=obj.apply_reconciled, alert=obj.out.transitions.append, set_time=set_time,
                       journals=obj.journals, in_flight=obj.oms.in_flight)
        if hasattr(obj, "hold") and hasattr(obj, "on_fill"):  # trading.risk.RiskEngine
            def apply(events: list) -> None:
                for ev in events:
                    (obj.on_fill if isinstance(ev, Fill) else obj.on_order_event)(ev)
            return cls(obj, apply=apply)
        raise TypeError(f"reconciliation target must be a Trader or a RiskEngine, not {type(obj).__name__}")

    def apply(self, events: Sequence[OrderEvent | Fill]) -> None:
        if events and self._apply is not None:
            self._apply(list(events))

    def hold(self, verdict: Verdict, cause: str, reason: str, ts: int) -> None:
        """Hold the account at the verdict's level; a hold that changes no state still alerts (the
        account may already be HALTED by the start hold or reducing for another cause)."""
        if self._set_time is not None:
            self._set_time(ts)
        before = self.risk.state
        self.risk.hold(cause, _LEVEL[verdict], reason, who=WHO)
        if self.risk.state is before and self._alert is not None:
            self._alert(StateTransition(f"account:{self.account}", before, before, f"{cause}: {reason}", ts, WHO))

    def release(self, cause: str, reason: str, ts: int) -> None:
        if self._set_time is not None:
            self._set_time(ts)
        self.risk.release(cause, reason, who=WHO)

    def held(self, cause: str) -> TradingState | None:
        return self.risk.held(cause)


# -- the system of record ---------------------------------------------------------------------------------

class ReconStore:
    """storage.reconcile on one engine, a transaction per call (blocking: call from a thread)."""

    def __init__(self, engine_or_url: "sa.Engine | str", *, mode: str, exchange: str) -> None:
        from storage import db

        self.mode, self.exchange = mode, exchange
        self._own = isinstance(engine_or_url, str)
        self._engine = db.create_engine(engine_or_url, pool_size=1) if self._own else engine_or_url

    def since(self, account: str, now_ns: int, lookback_ns: int) -> int:
        from storage import reconcile as sr

        with self._engine.connect() as conn:
            return sr.start_since(conn, account, mode=self.mode, now_ns=now_ns, lookback_ns=lookback_ns)

    def read(self, account: str, venue: VenueSnapshot) -> RecordSnapshot:
        from storage import reconcile as sr

        with self._engine.connect() as conn:
            return sr.read_record(conn, account, mode=self.mode, exchange=self.exchange, venue=venue)

    def write(self, rec: Reconciliation, kind: str, *, extra: Sequence[OrderEvent | Fill] = (),
              baseline: dict[str, Decimal] | None = None, journalled_elsewhere: Iterable[str] = (),
              balances: dict[str, Decimal] | None = None) -> str:
        from storage import reconcile as sr

        with self._engine.begin() as conn:
            return sr.write_run(conn, rec, mode=self.mode, kind=kind, exchange=self.exchange,
                                extra_fills=[e for e in extra if isinstance(e, Fill)],
                                extra_events=[e for e in extra if isinstance(e, OrderEvent)], baseline=baseline,
                                journalled_elsewhere=journalled_elsewhere, balances=balances)

    def failed(self, account: str, kind: str, ts_ns: int, reason: str) -> str:
        from storage import reconcile as sr

        with self._engine.begin() as conn:
            return sr.write_failed_run(conn, account, mode=self.mode, kind=kind, ts_ns=ts_ns, reason=reason)

    def close(self) -> None:
        if self._own:
            self._engine.dispose()


# -- start ----------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    verdict: Verdict
    reason: str
    reconciliation: Reconciliation | None = None
    run_id: str | None = None


_SECRETISH = re.compile(r"(?i)(signature|api[_-]?key|secret|passphrase|token)=[^&\s\"']+")


def failure_reason(what: str, exc: BaseException) -> str:
    """One line, no secrets: a venue error may quote a signed URL."""
    text = _SECRETISH.sub(r"\1=<redacted>", str(exc).splitlines()[0] if str(exc) else "")[:300]
    return f"{what} failed: {type(exc).__name__}: {text}" if text else f"{what} failed: {type(exc).__name__}"


async def _locked(lock: asyncio.Lock | None, fn: Callable[[], Any]) -> Any:
    if lock is None:
        return fn()
    async with lock:
        return fn()


async def reconcile_at_start(venue: SnapshotVenue, engine_or_trader: Any, store: ReconStore,
                             config: ReconConfig | None = None, *, clock: Callable[[], int] = time.time_ns,
                             lock: asyncio.Lock | None = None) -> Outcome:
    """The start gate: the account trades nothing until this returns ok (see the module's doc).  Never
    raises for a venue or store failure: the account is HALTED and the outcome says why."""
    cfg = config or ReconConfig()
    target = Target.of(engine_or_trader)
    acct = target.account
    now = clock()
    await _locked(lock, lambda: target.hold(Verdict.HALTED, START, "awaiting the start reconciliation", now))
    try:
        since = await asyncio.to_thread(store.since, acct, now, int(cfg.lookback_s * NS_PER_S))
        snap = await venue.snapshot(since)
        ours = await asyncio.to_thread(store.read, acct, snap)
        rec = reconcile(snap, ours, cfg.tolerance, fix_with_trades=cfg.fix_with_trades)
        extra: list[OrderEvent | Fill] = []
        if rec.queries:
            answers, answer_fills, extra = await _ask(venue, rec.queries, cfg.query_timeout_s, clock)
            rec = reconcile(snap, ours, cfg.tolerance, answers=answers, answer_fills=answer_fills,
                            fix_with_trades=cfg.fix_with_trades)
        known = {f.fill_id for f in rec.fills}
        extra = [e for e in extra if not (isinstance(e, Fill) and (e.fill_id in known or e.fill_id in ours.fill_ids))]
        baseline = dict(snap.balances) if ours.expected_balances is None and rec.ok else None
        elsewhere = _journalled_elsewhere(target, [*rec.events, *extra])
        run_id = await asyncio.to_thread(store.write, rec, "start", extra=extra, baseline=baseline,
                                         journalled_elsewhere=elsewhere, balances=dict(snap.balances))

        def settle() -> None:
            target.apply([*rec.fills, *rec.events, *extra])
            _hold_for(target, rec, now)
            target.release(START, f"start reconciliation {rec.verdict.value}: {rec.reason}", now)

        await _locked(lock, settle)
        log.info("start reconciliation of %s: %s (%s); %s", acct, rec.verdict.value, rec.reason, rec.counts())
        return Outcome(rec.verdict, rec.reason, rec, run_id)
    except Exception as exc:  # noqa: BLE001 -- fail closed: whatever went wrong, the account halts with why
        reason = failure_reason("start reconciliation", exc)
        log.error("%s: account %s halted", reason, acct)

        def halt() -> None:
            target.hold(Verdict.HALTED, HALT, reason, now)
            target.release(START, reason, now)

        await _locked(lock, halt)
        run_id = None
        try:
            run_id = await asyncio.to_thread(store.failed, acct, "start", now, reason)
        except Exception:  # noqa: BLE001 -- the store may be what failed; the halt stands without the row
            log.exception("could not record the failed start reconciliation of %s", acct)
        return Outcome(Verdict.HALTED, reason, None, run_id)


def _journalled_elsewhere(target: Target, events: Iterable[OrderEvent | Fill]) -> set[str]:
    return {e.client_order_id for e in events if isinstance(e, OrderEvent) and target.journals(e.client_order_id)}


def _hold_for(target: Target, rec: Reconciliation, ts: int) -> None:
    """Hold the account at a verdict worse than it is already held for (a hold never steps down)."""
    if rec.verdict is Verdict.HALTED and target.held(HALT) is None:
        target.hold(Verdict.HALTED, HALT, rec.reason, ts)
    elif rec.verdict is Verdict.REDUCING and target.held(REDUCE) is None and target.held(HALT) is None:
        target.hold(Verdict.REDUCING, REDUCE, rec.reason, ts)


async def _ask(venue: SnapshotVenue, queries: Iterable[tuple[str, str]], timeout_s: float,
               clock: Callable[[], int]) -> tuple[dict[str, OrderEvent], list[Fill], list[OrderEvent | Fill]]:
    """Query each order and wait (up to ``timeout_s``) for the venue's answers.  Returns (answers by client
    id, fills of the queried orders, everything else polled meanwhile -- facts to record, never dropped)."""
    queries = list(queries)
    for cid, symbol in queries:
        venue.query(cid, symbol, clock())
    wanted = {cid for cid, _ in queries}
    answers: dict[str, OrderEvent] = {}
    fills: list[Fill] = []
    other: list[OrderEvent | Fill] = []
    deadline = time.monotonic() + timeout_s
    while True:
        for ev in venue.poll() or ():
            if ev.client_order_id not in wanted:
                other.append(ev)
            elif isinstance(ev, Fill):
                fills.append(ev)
            else:
                answers[ev.client_order_id] = ev  # the latest answer wins
        if wanted <= set(answers) or time.monotonic() >= deadline:
            return answers, fills, other
        await asyncio.sleep(0.05)


async def start_and_watch(venue: SnapshotVenue, engine_or_trader: Any, store: ReconStore,
                          config: ReconConfig | None = None, *, lock: asyncio.Lock | None = None,
                          clock: Callable[[], int] = time.time_ns) -> tuple[Outcome, "Reconciler", asyncio.Task]:
    """The worker's wiring in one call: the start gate, then the periodic runs as a task (started whatever
    the start's verdict: a halted account still has its venue's facts recorded).  Cancel the task to stop."""
    outcome = await reconcile_at_start(venue, engine_or_trader, store, config, clock=clock, lock=lock)
    since = outcome.reconciliation.ts if outcome.reconciliation is not None else None
    rc = Reconciler(venue, engine_or_trader, store, config, clock=clock, lock=lock, since_ns=since)
    return outcome, rc, asyncio.create_task(rc.run(), name=f"reconciler-{rc.target.account}")


# -- periodic ----------------------------------------------------------------------------------------------

class Reconciler:
    """Periodic reconciliation of one account (see the module's doc)."""

    def __init__(self, venue: SnapshotVenue, engine_or_trader: Any, store: ReconStore,
                 config: ReconConfig | None = None, *, clock: Callable[[], int] = time.time_ns,
                 lock: asyncio.Lock | None = None, since_ns: int | None = None) -> None:
        self.venue, self.store, self.cfg = venue, store, config or ReconConfig()
        self.target = Target.of(engine_or_trader)
        self.clock, self.lock = clock, lock
        self.last_ts = since_ns  # the previous snapshot's time: the next one reads trades from a bit before it
        self.failures = 0
        self.seen: Counter[tuple[str, str]] = Counter()  # runs in a row each difference was seen in
        self.counters: Counter[str] = Counter()
        self.last: Reconciliation | None = None
        self._balances_at: float | None = None

    async def run(self) -> None:
        """Forever: orders every ``orders_interval_s``, balances when due.  Cancel the task to stop."""
        while True:
            due = self._balances_at is None or time.monotonic() - self._balances_at >= self.cfg.balances_interval_s
            if await self.run_once(balances=due) is not None and due:
                self._balances_at = time.monotonic()
            await asyncio.sleep(self.cfg.orders_interval_s)

    async def run_once(self, *, balances: bool = True) -> Reconciliation | None:
        """One periodic run; None when it failed (counted; HALTED after ``max_failures`` in a row)."""
        now = self.clock()
        acct = self.target.account
        try:
            since = (self.last_ts if self.last_ts is not None else now) - int(self.cfg.overlap_s * NS_PER_S)
            snap = await self.venue.snapshot(since)
            ours = await asyncio.to_thread(self.store.read, acct, snap)
            raw = reconcile(snap, ours, self.cfg.tolerance, check_balances=balances, skip_recent_trades=True,
                            fix_with_trades=self.cfg.fix_with_trades)
            in_flight = await _locked(self.lock, self.target.in_flight)
            rec = self._confirmed(self._resolving(raw, in_flight), balances)
            for cid, symbol in rec.queries:
                self.venue.query(cid, symbol, now)  # the answer reaches the OMS through poll()
            if balances or rec.differences:  # a clean orders-only run is counted, not stored
                await asyncio.to_thread(self.store.write, rec, "periodic",
                                        journalled_elsewhere=_journalled_elsewhere(self.target, rec.events),
                                        balances=dict(snap.balances) if balances else None)
            await _locked(self.lock, lambda: (self.target.apply([*rec.fills, *rec.events]),
                                              _hold_for(self.target, rec, now)))
        except Exception as exc:  # noqa: BLE001 -- a failed run never reads as "in agreement"
            self.failures += 1
            self.counters["failed"] += 1
            reason = failure_reason("periodic reconciliation", exc)
            log.warning("%s (%d in a row)", reason, self.failures)
            if self.failures >= self.cfg.max_failures and self.target.held(HALT) is None:
                reason = f"{reason}; {self.failures} runs in a row"
                await _locked(self.lock, lambda: self.target.hold(Verdict.HALTED, HALT, reason, now))
                try:
                    await asyncio.to_thread(self.store.failed, acct, "periodic", now, reason)
                except Exception:  # noqa: BLE001
                    log.exception("could not record the failed reconciliation of %s", acct)
            return None
        self.failures = 0
        if rec.verdict is not Verdict.OK or raw.verdict is not Verdict.OK:
            log.warning("periodic reconciliation of %s: %s (%s)", acct, rec.verdict.value, rec.reason)
        for d in rec.differences:
            if d.action == "record_fill":
                log.info("periodic reconciliation of %s: %s", acct, d.detail)
        self.last_ts, self.last = snap.ts, rec
        self.counters[f"runs_{rec.verdict.value}"] += 1
        self.counters["missed_fills"] += sum(1 for d in rec.differences if d.kind.value == "missed_fill")
        return rec

    def _resolving(self, rec: Reconciliation, in_flight: dict[str, float]) -> Reconciliation:
        """Orders the venue does not show that the OMS is still establishing (in flight after a send, or
        restored after a restart and being asked about) are its business for ``resolve_grace_s``: listed,
        queried, not counted against the account."""
        if not in_flight:
            return rec
        diffs, changed = [], False
        for d in rec.differences:
            age = in_flight.get(d.client_order_id or "")
            if (d.kind is Kind.UNKNOWN_AT_VENUE and d.severity is not Verdict.OK and age is not None
                    and age < self.cfg.resolve_grace_s):
                d = replace(d, severity=Verdict.OK, detail=f"{d.detail} (the OMS has been establishing it for "
                                                           f"{age:.1f} s)")
                changed = True
            diffs.append(d)
        if not changed:
            return rec
        worst, reason = verdict_of(diffs)
        return replace(rec, differences=tuple(diffs), verdict=worst, reason=reason)

    def _confirmed(self, rec: Reconciliation, balances: bool) -> Reconciliation:
        """The run with only the differences seen ``confirmations`` runs in a row counting for the verdict
        (the rest are listed, and counted for the next run)."""
        checked = {d.key for d in rec.differences if d.severity is not Verdict.OK}
        for key in list(self.seen):
            if key not in checked and (balances or key[0] != "balance_drift"):
                del self.seen[key]  # gone (a balance drift can only go in a run that looked at balances)
        for key in checked:
            self.seen[key] += 1
        counting = [d for d in rec.differences
                    if d.severity is not Verdict.OK and self.seen[d.key] >= self.cfg.confirmations]
        worst = max((d.severity for d in counting), key=lambda s: s.severity, default=Verdict.OK)
        if worst is rec.verdict:
            return rec
        waiting = [d.detail for d in rec.differences if d.severity is not Verdict.OK and d not in counting]
        reason = (rec.reason if worst is not Verdict.OK else
                  f"{len(waiting)} difference(s) to confirm on the next run: " + "; ".join(waiting[:3]))
        if worst is not Verdict.OK:
            reason = "; ".join(d.detail for d in counting if d.severity is worst)
        return replace(rec, verdict=worst, reason=reason)
