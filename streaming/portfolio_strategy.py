"""The stream's portfolio strategy: rebalance to the optimiser's stored target weights.

``TargetRebalance`` is ``trading.strategies.rebalance.Rebalance`` (same ``every`` / ``threshold``) whose
weights are the latest ``target_weights`` rows of one ``portfolio`` with ``as_of`` before the day of the
decision (storage.target_weights.weights_for_trading_day says why strictly before) -- the rows the
Dagster asset ``target_weights`` (assets/portfolio.py) writes each day.  In the
stream configuration its name is ``target_rebalance``; ``create_stream_strategy``
(streaming/ml_strategy.py) builds it, e.g. ``{"rebal": ["target_rebalance", {"portfolio": "main",
"every": 60}]}``.  New weights are traded at the next bar; ``every`` re-trades the drift in between.

Loading follows the ML slot's models: ``TargetWeightsSource`` reads Postgres, and in the worker the
``weights_poller`` timer (streaming/timers.py) calls ``refresh_weights`` in a thread, because a query must
not stall the hot path; in process (tests, replays) the strategy refreshes inline per bar.  A source
re-reads every ``poll_interval_s``, at once when the decision day changes, and on its first call.

Why it is flat is said the way RegistrySignal says it (``flat_reason`` in GET /model, the
tradeloop_model_flat gauge, one log line per new reason):
  * weights not loaded yet (start-up, Postgres never answered): no targets at all, positions are held,
    so that a restart does not sell what the first query buys back a second later;
  * no rows for the portfolio before the day (or all weights zero): target 0 for every held symbol.
Postgres going down after a load keeps the last weights, with a warning in the view.

Staleness: the source judges the weights it holds against ``max_age_hours`` (the setting
weights_max_age_hours, as the Dagster check ``weights_fresh`` does, trading.portfolio.staleness) at the
time of the slot's last decision; GET /model shows it under ``weights_source`` and /metrics as
tradeloop_target_weights_age_hours.  Stale weights keep trading (the last decision stands); the alert is
the check's and the gauge's.

Costs and taxes (the settings portfolio_min_trade, portfolio_lot_method, portfolio_wash_sale_days, or the
slot's params of the same names): a trade smaller than ``min_trade`` of the slot's allocation is not made;
the slot's fills open and relieve tax lots (trading.portfolio.tax.TaxLedger: FIFO or HIFO relief,
realised gains before fees); after a sale at a loss, a buy of that symbol is deferred for
``wash_sale_days`` (0 = off).  A restarted worker rebuilds the lots from the slot's stored fills
(``restore_fills``, as it rebuilds positions); a swap at run time (an operator's or a release's) hands the
new strategy the slot's fills when the slot ran a strategy that keeps them, else it starts with no lots
(sales beyond them are counted as ``untracked_sells``).

Sizing: a weight is a target for the engine's sizer.  Rebalance's contract is a fraction-of-equity sizer
of 1.0 (weight 0.25 = 25 % of equity), as in the tests; the stream's Trader sizes every slot with
``FixedFraction(config.FRACTION_PER_SYMBOL)``, so there the slot holds the weights scaled by that fraction
(same proportions), and ``threshold`` compares against unscaled weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from trading.portfolio.staleness import Staleness, staleness
from trading.portfolio.tax import TaxLedger
from trading.records import Bar, Fill, Side
from trading.sizing import FixedFraction
from trading.strategies.base import Context, Param, ParameterValueError, StrategyError, TargetPosition, UnknownParameterError
from trading.strategies.rebalance import Rebalance
from trading.strategies.capabilities import FillHistory, WeightsBacked

log = logging.getLogger(__name__)

STREAM_PORTFOLIO_NAME = "target_rebalance"
DEFAULT_PORTFOLIO = "main"  # assets.portfolio.TargetWeightsConfig.portfolio (not imported: it pulls in Dagster)
NS_PER_DAY = 86_400_000_000_000
_EPOCH = date(1970, 1, 1)


def utc_day(ts_ns: int) -> date:
    return _EPOCH + timedelta(days=ts_ns // NS_PER_DAY)


@dataclass(frozen=True)
class LoadedWeights:
    """One read of the table: what the strategy trades until the next one."""

    portfolio: str
    for_day: date  # read with as_of < for_day
    as_of: date | None = None  # None: the portfolio has no rows up to for_day
    weights: dict[str, float] = field(default_factory=dict)  # the non-zero ones: what Rebalance trades
    model: str | None = None
    solver_status: str | None = None

    @property
    def key(self) -> tuple:
        """Equal for the same decision: a re-read of unchanged rows must not force a rebalance."""
        return self.as_of, tuple(sorted(self.weights.items()))

    @property
    def reason(self) -> str | None:
        """Why these weights hold the slot flat, or None."""
        if self.as_of is None:
            return f"no target_weights rows for portfolio {self.portfolio!r} with as_of < {self.for_day}"
        if not self.weights:
            return f"the target weights of {self.portfolio!r} as of {self.as_of} are all zero"
        return None


def to_loaded(portfolio: str, day: date, rows: list) -> LoadedWeights:
    """storage.target_weights.WeightRow rows -> LoadedWeights.  The rule of trading.portfolio.record.rebalance_weights, not the
    function: importing trading.portfolio loads cvxpy (~1.5 s) into the worker for eight lines.  Zero
    weights are left out (Rebalance closes held symbols missing from its weights); a weight that is not a
    finite number (numeric 'NaN') raises ValueError, and the source keeps its last weights."""
    if not rows:
        return LoadedWeights(portfolio, day)
    weights = {}
    for r in rows:
        w = float(r.weight)
        if not math.isfinite(w):
            raise ValueError(f"target weight of {r.symbol!r} as of {r.as_of} is not finite: {w}")
        if w != 0.0:
            weights[r.symbol] = w
    return LoadedWeights(portfolio, day, rows[0].as_of, weights, rows[0].model, rows[0].solver_status)


class TargetWeightsSource:
    """The latest target_weights of ``portfolio`` in Postgres, re-read at most every ``poll_interval_s``
    (or when asked for another day).  Swapped in with one assignment: a reader on the event loop sees
    the old or the new weights, never a mix, while a thread refreshes."""

    def __init__(self, database_url: str, portfolio: str, poll_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_age_hours: float = 26.0) -> None:
        self.database_url, self.portfolio = database_url, portfolio
        self.poll_interval_s = poll_interval_s
        self.max_age_hours = max_age_hours
        self._clock = clock
        self._engine: Any = None
        self._loaded: LoadedWeights | None = None
        self._last_poll: float | None = None
        self._polled_day: date | None = None
        self._loaded_at: str | None = None
        self._warning: str | None = None
        self._logged_outage = False
        self.queries = 0

    def _db(self) -> Any:
        if self._engine is None:
            from storage import db

            # one small query per poll from one thread at a time: one connection is plenty
            self._engine = db.create_engine(self.database_url, pool_size=1, max_overflow=0)
        return self._engine

    def refresh(self, day: date) -> bool:
        """Read the weights for ``day``. True when they differ from the ones loaded before."""
        from storage.target_weights import weights_for_trading_day

        self._last_poll, self._polled_day = self._clock(), day
        self.queries += 1
        try:
            with self._db().connect() as conn:
                rows = weights_for_trading_day(conn, self.portfolio, day)
            loaded = to_loaded(self.portfolio, day, rows)
        except Exception as exc:  # noqa: BLE001 -- Postgres down, a bad row: keep the last weights, say why
            self._warning = f"target_weights of {self.portfolio!r} unavailable: {type(exc).__name__}: {exc}"[:500]
            if not self._logged_outage:
                log.warning("%s (keeping %s)", self._warning,
                            self._loaded.as_of if self._loaded else "no weights")
                self._logged_outage = True
            return False
        before = self._loaded
        self._loaded = loaded  # the atomic swap
        self._loaded_at = datetime.now(timezone.utc).isoformat()
        self._warning, self._logged_outage = None, False
        changed = before is None or before.key != loaded.key
        if changed:
            log.info("target weights of %r as of %s loaded: %s", self.portfolio, loaded.as_of, loaded.weights)
        return changed

    def maybe_refresh(self, day: date) -> bool:
        """refresh(day) when due: never polled, another day than the last poll's, or the interval passed."""
        if (self._last_poll is not None and day == self._polled_day
                and self._clock() - self._last_poll < self.poll_interval_s):
            return False
        return self.refresh(day)

    def current(self) -> LoadedWeights | None:
        return self._loaded

    def staleness(self, at: datetime) -> Staleness | None:
        """How old the loaded weights are at ``at``; None before the first load."""
        loaded = self._loaded
        return None if loaded is None else staleness(self.portfolio, loaded.as_of, at, self.max_age_hours)

    @property
    def status(self) -> dict:
        loaded = self._loaded
        reason = "target weights not loaded yet" if loaded is None else loaded.reason
        return {"portfolio": self.portfolio, "as_of": str(loaded.as_of) if loaded and loaded.as_of else None,
                "for_day": str(loaded.for_day) if loaded else None, "weights": dict(loaded.weights) if loaded else {},
                "model": loaded.model if loaded else None, "solver_status": loaded.solver_status if loaded else None,
                "loaded_at": self._loaded_at, "reason": reason, "warning": self._warning,
                "poll_interval_s": self.poll_interval_s, "queries": self.queries}


class TargetRebalance(Rebalance, WeightsBacked, FillHistory):
    name = STREAM_PORTFOLIO_NAME
    version = "1"
    params = {  # and ``portfolio`` (a string), checked in validate_params
        **Rebalance.params,
        "allocation": Param(float, 0.0, 0.0, 1.0, doc="share of account equity the weights apply to; "
                                                      "0 = the stream's per-symbol sizer fraction"),
        "min_trade": Param(float, 0.0, 0.0, 1.0, doc="trades smaller than this share of the slot's allocation "
                                                     "are not made"),
        "lot_method": Param("categorical", "fifo", choices=("fifo", "hifo"), doc="tax lots relieved by a sale"),
        "wash_sale_days": Param(int, 0, 0, 366, doc="days a buy-back is deferred after a loss sale; 0 = off"),
    }

    def __init__(self, source: Any, *, inline_refresh: bool = True, weight_scale: float | None = None,
                 **params: Any) -> None:
        self.source = source
        # share of equity a weight of 1 is held at: the slot's allocation, else the engine's sizer fraction
        # (which the strategy cannot see: the stream passes it); it puts min_trade in allocation units
        self._weight_scale = weight_scale
        # in the worker the weights_poller timer refreshes off the event loop; in process, per bar
        self.inline_refresh = inline_refresh
        params.setdefault("portfolio", source.portfolio)
        super().__init__(weights=self._current_weights, **params)
        if self.p["allocation"] > 0:  # the engine sizes this slot with it instead of the stream's sizer
            self.sizer = FixedFraction(self.p["allocation"])
            self._weight_scale = self.p["allocation"]
        elif self._weight_scale is None:
            self._weight_scale = 1.0  # Rebalance's contract: a fraction-of-equity sizer of 1.0
        if self.p["portfolio"] != source.portfolio:
            raise ParameterValueError(f"parameter portfolio={self.p['portfolio']!r} differs from the weights "
                                      f"source's portfolio {source.portfolio!r}")

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = dict(params)
        portfolio = params.pop("portfolio", DEFAULT_PORTFOLIO)
        unknown = sorted(set(params) - set(cls.params))
        if unknown:
            raise UnknownParameterError(f"unknown parameter {unknown[0]!r} for strategy {cls.name!r} "
                                        f"(known: {', '.join(sorted([*cls.params, 'portfolio']))})")
        if not isinstance(portfolio, str) or not portfolio.strip():
            raise ParameterValueError(f"parameter portfolio={portfolio!r} must be a non-empty string "
                                      "(a portfolio of the target_weights table)")
        return {**super().validate_params(params), "portfolio": portfolio}

    def reset(self) -> None:
        super().reset()
        self.day: date | None = None  # of the last decision: the day the timer's refresh reads weights for
        self._weights: dict[str, float] = {}
        self._traded_key: tuple | None = None
        self._traded_as_of: date | None = None
        self.unpriced: list[str] = []  # weighted symbols without a price: Rebalance cannot size them
        self.counters: Counter[str] = Counter()
        self.flat_reason: str | None = "no bar seen yet"
        self._logged_reason: str | None = None
        self.ts: int | None = None  # of the last decision: what staleness is judged at
        wash = self.p["wash_sale_days"]
        self.lots = TaxLedger(method=self.p["lot_method"], wash_days=wash if wash > 0 else None)
        self.deferred: dict[str, str] = {}  # symbol -> day of the buy the wash-sale rule deferred last
        self.untracked_sells: dict[str, float] = {}  # sold beyond the lots held (e.g. bought before a restart)

    # -- what the stream's machinery reads ---------------------------------------------------------
    @property
    def model_name(self) -> str:  # the Trader's tap records it on each signal: which weights gave the target
        return f"target_weights:{self.p['portfolio']}"

    @property
    def model_version(self) -> str:
        return str(self._traded_as_of) if self._traded_as_of else "none"

    def refresh_weights(self) -> bool:
        """The worker's timer calls this in a thread: the weights for the day of the last decision (the
        wall clock's day before the first bar)."""
        return self.source.maybe_refresh(self.day or datetime.now(timezone.utc).date())

    # -- decisions ---------------------------------------------------------------------------------
    def _current_weights(self, ts: int, ctx: Context) -> dict[str, float]:
        return self._weights

    def _say(self, reason: str | None) -> None:
        self.flat_reason = reason
        if reason is not None and reason != self._logged_reason:
            log.warning("%s(portfolio=%r) is flat: %s", self.name, self.p["portfolio"], reason)  # once per reason
        self._logged_reason = reason

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        day = utc_day(ctx.ts)  # decisions are made at the bar's close
        self.day, self.ts = day, ctx.ts
        if self.inline_refresh:
            self.source.maybe_refresh(day)
        loaded = self.source.current()
        if loaded is None:
            self.counters["held_not_loaded"] += 1
            st = self.source.status
            self._say(st["warning"] or st["reason"])
            return []
        if loaded.as_of is not None and loaded.as_of >= day:  # read for a later day (wall clock at start-up)
            self.counters["held_future_weights"] += 1
            self._say(f"the loaded weights are as of {loaded.as_of}, not before the current day {day}: "
                      "awaiting a re-read")
            return []
        if loaded.key != self._traded_key:
            # new weights (or none any more) are traded at this decision, not up to `every` bars later
            self._traded_key, self._weights, self._traded_as_of = loaded.key, loaded.weights, loaded.as_of
            self._count = 0
            self.counters["weights_loaded"] += 1
        self._say(loaded.reason)
        targets = self._costs_and_taxes(super().on_bar(bar, ctx), ctx, day)
        if targets:
            self.counters["rebalances"] += 1
            self.unpriced = sorted(s for s in self._weights if ctx.price(s) is None)
        return targets

    def _costs_and_taxes(self, targets: list[TargetPosition], ctx: Context, day: date) -> list[TargetPosition]:
        """Rebalance's targets less the trades below min_trade and the buys the wash-sale rule defers."""
        if not targets or (self.p["min_trade"] == 0 and self.lots.wash_days is None):
            return targets
        equity, scale = float(ctx.equity()), self._weight_scale
        out = []
        for t in targets:
            price = ctx.price(t.symbol)
            held = float(ctx.position(t.symbol) * price) / equity / scale if price is not None and equity > 0 else 0.0
            trade = t.target - held  # in weights of the slot's allocation
            if abs(trade) < self.p["min_trade"]:
                self.counters["skipped_min_trade"] += 1
                continue
            if trade > 0 and self.lots.blocked(t.symbol, day):
                self.counters["wash_sale_deferred"] += 1
                self.deferred[t.symbol] = str(day)
                continue
            out.append(t)
        return out

    def on_fill(self, fill: Fill, ctx: Context | None) -> list[TargetPosition]:
        """Each fill of the slot opens (buy) or relieves (sell, by lot_method) tax lots."""
        qty, price, day = float(fill.quantity), float(fill.price), utc_day(fill.ts)
        if qty <= 0 or price <= 0:
            return []
        if fill.side is Side.BUY:
            self.lots.buy(fill.symbol, qty, price, day)
        else:
            covered = min(qty, self.lots.position(fill.symbol))
            if covered > 1e-12:
                self.lots.sell(fill.symbol, covered, price, day)
            if qty - covered > 1e-12:
                self.untracked_sells[fill.symbol] = self.untracked_sells.get(fill.symbol, 0.0) + qty - covered
        return []

    def restore_fills(self, fills: list) -> None:
        """The slot's stored fills, oldest first, at worker start: the same lots and wash-sale windows as
        before the restart."""
        for f in fills:
            self.on_fill(f, None)

    def weights_age_hours(self) -> float:
        """Age of the loaded weights at the last decision (the wall clock before one); inf if none loaded."""
        verdict = self.source.staleness(self._judged_at())
        return math.inf if verdict is None else verdict.age_hours

    def _judged_at(self) -> datetime:
        if self.ts is None:
            return datetime.now(timezone.utc)
        return datetime.fromtimestamp(self.ts / 1e9, timezone.utc)

    def tax_view(self) -> dict:
        return {"lot_method": self.lots.method, "wash_sale_days": self.p["wash_sale_days"],
                "realized_gain": sum(r.gain for r in self.lots.realized),
                "disallowed_loss": sum(loss for _, _, loss in self.lots.disallowed),
                "lots": {s: [{"qty": lot.qty, "cost": lot.cost, "acquired": str(lot.acquired)} for lot in lots]
                         for s, lots in sorted(self.lots.lots.items()) if lots},
                "deferred_buys": dict(self.deferred), "untracked_sells": dict(self.untracked_sells)}

    def view(self) -> dict:
        """JSON-ready state for GET /model."""
        verdict = self.source.staleness(self._judged_at())
        fresh = None if verdict is None else {"stale": verdict.stale, "reason": verdict.reason,
                                              "age_hours": None if verdict.as_of is None else verdict.age_hours,
                                              "max_age_hours": verdict.max_age_hours}
        return {"strategy": self.name, "params": dict(self.p), "weights_source": self.source.status,
                "weights_freshness": fresh, "tax": self.tax_view(),
                "traded_as_of": self.model_version, "traded_weights": dict(self._weights),
                "day": str(self.day) if self.day else None, "flat_reason": self.flat_reason,
                "unpriced": self.unpriced, "counters": dict(self.counters)}


def create_target_rebalance(params: dict[str, Any] | None, *, database_url: str | None = None,
                            poll_interval_s: float | None = None, inline_refresh: bool = False) -> TargetRebalance:
    """``target_rebalance`` of the stream configuration; unset arguments come from the settings."""
    from deploy.settings import get_settings
    from streaming import config

    settings = get_settings()
    # the settings' cost and tax rules, unless the slot's params say otherwise
    params = {"min_trade": settings.portfolio_min_trade, "lot_method": settings.portfolio_lot_method,
              "wash_sale_days": settings.portfolio_wash_sale_days, **(params or {})}
    values = TargetRebalance.validate_params(dict(params))  # bad params fail before any connection
    database_url = database_url or settings.database_url
    poll_interval_s = poll_interval_s or settings.weights_poll_interval_s
    if not database_url:
        raise StrategyError(f"{STREAM_PORTFOLIO_NAME} reads the target_weights table: DATABASE_URL is not set")
    source = TargetWeightsSource(database_url, values["portfolio"], poll_interval_s=poll_interval_s,
                                 max_age_hours=settings.weights_max_age_hours)
    # without an allocation the stream's Trader sizes the slot with FixedFraction(FRACTION_PER_SYMBOL)
    return TargetRebalance(source, inline_refresh=inline_refresh, weight_scale=config.FRACTION_PER_SYMBOL, **params)
