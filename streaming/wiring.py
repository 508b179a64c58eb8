"""The worker's Trader, built from the settings and rebuilt from Postgres, and what refreshes it.

Everything the worker knows about building a Trader is here: which symbols (TRADELOOP_SYMBOLS, as sim
instruments), which strategies, limits, sizing and cash.  ``build_trader`` takes a Settings object and
touches no network, so a test can build the very Trader a worker runs and compare the two.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from streaming import config

if TYPE_CHECKING:
    from deploy.settings import Settings
    from streaming.state import WorkerState
    from streaming.trader import Trader
    from trading.records import Instrument

log = logging.getLogger(__name__)


class WiringError(ValueError):
    """The settings ask for a Trader that cannot be built (one line naming the setting)."""


def instruments(settings: Settings) -> dict[str, Instrument]:
    """The instruments the stream trades: the sim venue's, for the symbols of TRADELOOP_SYMBOLS."""
    from trading.marketdata.sim import SimVenue, anchored_config

    sim = SimVenue(anchored_config(settings.sim_seed, settings.history_start, exchange=settings.stream_exchange))
    known = {i.symbol: i for i in sim.instruments()}
    unknown = [s for s in settings.symbols if s not in known]
    if unknown:
        raise WiringError(f"TRADELOOP_SYMBOLS: the stream's venue has no {unknown}; it lists {sorted(known)}")
    return {s: known[s] for s in settings.symbols}


def strategy_factory(settings: Settings, symbols: list[str]) -> Callable[[str, dict | None], Any]:
    """(name, params) -> strategy; ``ml_signal`` (the MLflow champion, streaming.ml_strategy) and
    ``target_rebalance`` (target_weights, streaming.portfolio_strategy) are refreshed off the event loop
    by the timers (streaming/timers.py)."""
    from streaming.ml_strategy import create_stream_strategy

    def make(name: str, params: dict | None) -> Any:
        return create_stream_strategy(name, params, model_name=settings.model_name, tracking_uri=settings.tracking_uri,
                                      poll_interval_s=settings.model_poll_interval_s, symbols=symbols,
                                      interval=config.BAR_INTERVAL, inline_refresh=False,
                                      database_url=settings.database_url)

    return make


def build_trader(settings: Settings, venue: Any = None) -> Trader:
    """The account's Trader: configured strategies on every symbol of TRADELOOP_SYMBOLS, limits, sizing;
    ``venue``: a live exchange adapter (streaming.venues) for sandbox/live, None for the paper venue."""
    from streaming.trader import Trader
    from trading.oms.router import Router, RouterConfig
    from trading.risk import RiskLimits, load_limits
    from trading.sizing import FixedFraction

    limits = load_limits(settings.risk_limits) if settings.risk_limits else RiskLimits.from_dict(config.LIMITS)
    traded = instruments(settings)
    factory = strategy_factory(settings, sorted(traded))
    chosen = settings.stream_strategies or config.STRATEGIES
    strategies = {slot: factory(name, params) for slot, (name, params) in chosen.items()}
    return Trader(settings.account, strategies, cash=settings.starting_cash, limits=limits, instruments=traded,
                  sizer=FixedFraction(config.FRACTION_PER_SYMBOL), interval=config.BAR_INTERVAL,
                  exchange=settings.stream_exchange, mode=settings.mode, factory=factory, venue=venue,
                  router=Router(RouterConfig(settings.router_participation, settings.router_volume_window_s,
                                             settings.router_slice_s),
                                {s: i.lot_size for s, i in traded.items()}))


async def start_trader(worker: WorkerState, settings: Settings) -> Trader:
    """Build the Trader and rebuild it from Postgres (once per process).

    The agent, the ready task and control actions all call this at start-up; the build awaits (registry,
    Postgres), so without one shared build two callers would each build a Trader and the views (/risk,
    /model) could read a different one from the one trading.  A failed build is forgotten so that the
    next caller retries it."""
    if worker.trader is not None:
        return worker.trader
    building = worker.building
    if building is None:
        building = worker.building = asyncio.ensure_future(_build(worker, settings))
    try:
        return await asyncio.shield(building)  # one caller cancelled must not cancel the shared build
    except Exception:
        if worker.building is building:
            worker.building = None
        raise


async def _build(worker: WorkerState, settings: Settings) -> Trader:
    from streaming.store import Store

    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set: the stream needs Postgres, its system of record")
    store = Store(settings.database_url, mode=settings.mode)
    await asyncio.to_thread(store.ensure_partitions, time.time_ns())
    venue = None
    if settings.mode != "paper":  # sandbox or live: the exchange adapter, connected before anything trades
        from streaming.venues import make_venue

        venue = make_venue(settings, worker.venue_key, settings.account, instruments(settings))
        await venue.start()
        worker.venue = venue
    trader = build_trader(settings, venue)
    from streaming.releases import restore_runtime

    await restore_runtime(worker, store, trader)  # run-time swaps, limits and live releases, before the warm-up
    await refresh_models(trader)  # before the warm-up, so the first live bar is scored by the current champion
    # ML features need a longer warm-up than the rule-based strategies (regime fit window)
    warmup = max([200] + [t.inner.warmup_bars for t in trader.engine.slots.values()])
    restored = await asyncio.to_thread(store.load, trader.account, list(trader.instruments),
                                       exchange=trader.exchange, interval=config.BAR_INTERVAL,
                                       warmup_bars=warmup, now_ns=time.time_ns())
    history = await asyncio.to_thread(load_history, settings.database_url, trader.exchange, list(trader.instruments),
                                      config.BAR_INTERVAL, warmup)
    worker.history_marks = last_bar_ts(history)
    restored.bars = merge_warmup(history, restored.bars, warmup)
    restored.watermark = last_bar_ts(restored.bars)
    from_store = sum(1 for b in restored.bars if b.receive_ts == HISTORY_MARK)
    log.info("warm-up: %d bars (%d from market_data_clean, %d recorded by the stream)", len(restored.bars),
             from_store, len(restored.bars) - from_store)
    trader.restore(restored)
    if venue is not None:
        await reconcile_first(worker, settings, trader, venue)
    worker.store, worker.trader = store, trader
    try:
        await load_scenarios(worker, settings)
    except Exception as exc:  # noqa: BLE001 -- no VaR is no reason not to trade; the reason is in GET /risk
        trader.scenarios = {**trader.scenarios, "error": f"scenario load failed: {type(exc).__name__}: {exc}"}
        worker.scenarios_at = time.monotonic()
        log.exception("VaR scenario load failed")
    log.info("trader %s restored: %d fills, %d known orders, %d warm-up bars, halted=%s; trading %s",
             trader.account, len(restored.fills), len(restored.known_order_ids), len(restored.bars),
             restored.halted, ", ".join(trader.instruments))
    return trader


async def reconcile_first(worker: WorkerState, settings: Settings, trader: Trader, venue: Any) -> None:
    """Fail closed: the account is held HALTED until the venue's open orders, recent fills and balances agree
    with PostgreSQL (streaming.reconciler), then reconciled periodically by a task of its own."""
    from streaming.reconciler import ReconConfig, ReconStore, start_and_watch

    store = ReconStore(settings.database_url, mode=settings.mode, exchange=venue.exchange_name)
    outcome, worker.reconciler, worker.recon_task = await start_and_watch(
        venue, trader, store, ReconConfig.from_settings(settings), lock=worker.lock)
    log.info("reconciliation at start: %s", outcome)


async def refresh_models(trader: Trader) -> None:
    """Ask the registry for every ML slot's aliases, in a thread: a registry call or a model load must
    not stall the hot path.  ChampionModel swaps a new version in with one assignment, so the agent
    sees the old or the new model for a whole bar, never a mix; an outage keeps the last model.
    An online model (ml/online.py) resumes from its checkpoint on the first call (before the warm-up) and
    is checkpointed when due: the snapshot is taken here, between bars, and registered in a thread."""
    for strat in trader.ml_strategies().values():
        for m in strat.models():
            await asyncio.to_thread(m.refresh)
        online = getattr(strat, "online", None)
        if online is None:
            continue
        if not online.resumed:
            await asyncio.to_thread(online.resume)
        elif online.checkpoint_due():
            await asyncio.to_thread(online.save, online.snapshot())


async def rewarm_from_history(worker: WorkerState, settings: Settings) -> int:
    """Strategies still warming up are rebuilt from market_data_clean when it holds bars they have not
    seen: on a first start the backfill lands after the worker has started, and without this the ML slot
    would wait about a day of live bars (a restart was the only cure). The state is built in a thread on
    a snapshot, then the bars that arrived meanwhile are fed on the event loop before it is swapped in.
    Returns the number of strategies re-warmed."""
    from trading.strategies.capabilities import WarmsFromHistory

    trader = worker.trader
    cold = [s for s in trader.ml_strategies().values() if isinstance(s, WarmsFromHistory) and s.cold_symbols]
    if not cold:
        return 0
    symbols = list(trader.instruments)
    marks = await asyncio.to_thread(history_marks, settings.database_url, trader.exchange, symbols, config.BAR_INTERVAL)
    if not any(ts > worker.history_marks.get(sym, -1) for sym, ts in marks.items()):
        return 0  # nothing newer in the store than what they were warmed with
    warmup = max(s.warmup_bars for s in cold)
    history = await asyncio.to_thread(load_history, settings.database_url, trader.exchange, symbols,
                                      config.BAR_INTERVAL, warmup)
    done = 0
    for strat in cold:
        mark, seen, params = strat.warm_snapshot()
        newest = last_bar_ts(seen)
        # stored bars the strategy has already passed would arrive out of order: only those before its newest
        older = [b for b in history if b.exchange_ts < newest.get(b.symbol, b.exchange_ts + 1)]
        state = await asyncio.to_thread(strat.build_warm_state, merge_warmup(older, seen, strat.warmup_bars), params)
        if strat.install_warm_state(state, mark):
            done += 1
    log.info("re-warmed %d of %d warming strategies from market_data_clean (%d stored bars, newest %s)",
             done, len(cold), len(history), {s: ts // 1_000_000_000 for s, ts in marks.items()})
    if done == len(cold):
        worker.history_marks = marks  # a strategy that could not swap (bars moved on) is retried next time
    return done


def history_marks(database_url: str, exchange: str, symbols: list[str], interval: str) -> dict[str, int]:
    """symbol -> open time (ns) of its newest bar in market_data_clean (symbols without bars absent)."""
    from storage import db
    from storage.market_data import last_clean_ts

    engine = db.create_engine(database_url)
    try:
        with engine.connect() as conn:
            last = {sym: last_clean_ts(conn, exchange, sym, interval) for sym in symbols}
    finally:
        engine.dispose()
    return {sym: int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000 for sym, ts in last.items() if ts is not None}


# receive_ts of the bars read from market_data_clean: they were never received by this stream
HISTORY_MARK = 0


def load_history(database_url: str, exchange: str, symbols: list[str], interval: str, warmup: int) -> list:
    """The last ``warmup`` bars per symbol in the historical store (market_data_clean), as Bar records:
    strategies and models warm up from the store instead of waiting for bars the stream records itself."""
    from decimal import Decimal

    from storage import db
    from storage.market_data import last_clean_ts, load_clean_bars
    from trading.marketdata.timeframes import interval_ns
    from trading.records import Bar

    step = interval_ns(interval)
    engine = db.create_engine(database_url)
    try:
        with engine.connect() as conn:
            out = []
            for sym in symbols:
                last = last_clean_ts(conn, exchange, sym, interval)
                if last is None:
                    continue
                end = int(last.timestamp()) * 1_000_000_000 + last.microsecond * 1000 + step
                frame = load_clean_bars(conn, exchange=exchange, symbols=[sym], interval=interval,
                                        start_ns=end - warmup * step, end_ns=end)
                # the float of the stored text, as Decimal(repr(x)): the same value features get in training
                out += [Bar(exchange, sym, interval, ts, HISTORY_MARK, *(Decimal(repr(x)) for x in ohlcv))
                        for ts, *ohlcv in frame.select("ts", "open", "high", "low", "close", "volume").iter_rows()]
    finally:
        engine.dispose()
    return out


def merge_warmup(history: list, stream: list, warmup: int) -> list:
    """One warm-up sequence from the historical store and the stream's own bars: one bar per (symbol, open
    time) -- the stream's where both have it (what it traded on) -- the last ``warmup`` of each symbol, in
    time order; live bars start after the newest of them (the watermark), so the seam has no duplicate
    and nothing out of order."""
    by_key = {(b.symbol, b.exchange_ts): b for b in history}
    by_key.update({(b.symbol, b.exchange_ts): b for b in stream})
    per: dict[str, list] = {}
    for (sym, _), b in sorted(by_key.items()):
        per.setdefault(sym, []).append(b)
    kept = [b for bars in per.values() for b in bars[-warmup:]]
    return sorted(kept, key=lambda b: (b.exchange_ts, b.symbol))


def last_bar_ts(bars: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in bars:
        out[b.symbol] = max(out.get(b.symbol, b.exchange_ts), b.exchange_ts)
    return out


async def refresh_weights(trader: Trader) -> None:
    """Re-read target_weights of the target_rebalance slots, in a thread (each source queries only when due)."""
    for strat in list(trader.weights_strategies().values()):  # a copy: a swap_strategy may change the slots meanwhile
        await asyncio.to_thread(strat.refresh_weights)


async def load_scenarios(worker: WorkerState, settings: Settings) -> None:
    """VaR scenarios of the traded symbols from market_data_clean into the risk engine (or why not)."""
    from streaming.scenarios import now_iso

    trader, store = worker.trader, worker.store
    assert trader is not None and store is not None, "load_scenarios before the Trader is built"
    syms, returns, info = await asyncio.to_thread(
        store.load_scenarios, trader.exchange, sorted(trader.instruments),
        interval=settings.var_source_interval, step=settings.var_scenario_step, count=settings.var_scenarios,
        min_count=settings.var_min_scenarios)
    info["loaded_at"] = now_iso()
    if info.get("error") and info["error"] != trader.scenarios.get("error"):
        log.warning("VaR: %s", info["error"])  # once per new reason, not every reload
    trader.set_scenarios(syms, returns, info)
    worker.scenarios_at = time.monotonic()
