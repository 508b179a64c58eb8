"""The whole platform on an accelerated clock: the stream's Trader fed the sim market minute by minute, and
at each simulated day's scheduled times the platform's own Dagster jobs (orchestration/automation.py) run
in process, and its decay sensor is evaluated -- no step has a second implementation here.

One simulated day D (times UTC, as the schedules of the 24/7 platform; the stream runs in between):

* 00:10 ``market_data_daily`` for D-1, one run per symbol (raw + clean bars and their checks)
* 00:30 ``target_weights_job`` for D-1 (the stream's portfolio slot re-reads its weights for D at once)
* 00:35 ``daily_reports`` as of D-1 (dbt build + tear sheets), every ``report_every_days`` (0: none) and after
  the last day
* 00:40 ``ml_features_job`` for D-1 (features and labels)
* 00:45 ``ml_decay_sensor`` evaluated; a run request launches ``retrain`` with the request's tags
* 02:30 ``retrain`` (train a challenger, gate, promote or refuse), every ``retrain_every_days``
* 03:00 ``tune`` (an Optuna study of the stream's rule-based strategy), every ``tune_every_days``

The stream's ML and portfolio slots pick up a promoted model or new weights right after the step that
made them (the worker's pollers would within seconds to a minute).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from orchestration.simulation.environment import SimulationError
from orchestration.simulation.timeline import NS, Timeline

DAY_NS = 86_400 * NS
MINUTE_NS = 60 * NS
# Data Docs rendered once after the last day (build_site), not by each market-data run: a run re-renders
# the site's index, which lists every result so far (quadratic over a simulation)
MARKET_DATA_CONFIG = {"ops": {op: {"config": {"update_data_docs": False}} for op in ("ohlcv", "ohlcv_clean")}}


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate and at which accelerated cadence (the 24/7 platform retrains nightly, tunes on
    demand and reports daily; a simulation keeps to a budget: README, "Whole-platform simulation")."""

    start: date
    days: int
    seed: int = 7
    symbols: tuple[str, ...] = ()  # empty: the settings' symbols
    warmup_days: int = 3  # history before ``start``: one day warms the features up, the rest is training data
    retrain_every_days: int = 7
    tune_every_days: int = 7
    tune_trials: int = 8
    report_every_days: int = 0  # 0: tear sheets after the last day only (a dbt build is a minute of a day's budget)
    weights_min_days: int = 3  # the optimisation's min_days (platform default 10: a short run would never re-weight)
    autogluon: bool = False  # LightGBM only by default: an AutoGluon fit takes a minute per retrain
    drain_every_bars: int = 180  # Trader batches stored every this many closed bars (one transaction each)
    history: str = "sim"  # "sim": the sim market of ``seed``; "stored": the platform's own market_data_clean

    def check(self, today: date) -> None:
        if self.days < 1:
            raise SimulationError(f"--days must be at least 1, got {self.days}")
        if self.warmup_days < 2:
            raise SimulationError(f"warm-up must be at least 2 days (features, then training data), got {self.warmup_days}")
        last = self.start + timedelta(days=self.days - 1)
        if last >= today:
            raise SimulationError(f"the last simulated day {last} is not over yet (today is {today} UTC): "
                                  f"choose --start {today - timedelta(days=self.days)} or earlier")
        if self.history not in ("sim", "stored"):
            raise SimulationError(f"history must be 'sim' or 'stored', got {self.history!r}")
        if self.report_every_days < 0:
            raise SimulationError(f"report_every_days must be 0 (last day only) or more, got {self.report_every_days}")
        for name in ("retrain_every_days", "tune_every_days"):
            if getattr(self, name) < 1:
                raise SimulationError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def first_history_day(self) -> date:
        return self.start - timedelta(days=self.warmup_days)


def _ns(day: date, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc).timestamp()) * NS


def step_failure(result: Any) -> str | None:
    """The innermost error message of a failed in-process run, one line (a dg.Failure's description)."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description.strip().splitlines()[0]
        err = data.error
        while err is not None and err.cause is not None:
            err = err.cause
        text = (err.message if err is not None else "step failed").strip().splitlines()[0]
        return text.split(": ", 1)[1] if ": " in text and text.split(": ", 1)[0].count(".") else text
    return None


def _meta(result: Any, node: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mats[-1].metadata.items()} if mats else {}


@dataclass
class DayStats:
    fills: Counter = field(default_factory=Counter)
    orders: int = 0
    bars: int = 0


class Simulation:
    """One run of the platform over ``spec`` against the simulation's settings (environment.py)."""

    def __init__(self, spec: SimulationSpec, settings: Any, timeline: Timeline,
                 progress: Callable[[str], None] = lambda s: None, history_url: str = "") -> None:
        """``history_url``: the database whose market_data_clean is the market (``--history stored``)."""
        self.spec, self.settings, self.timeline, self.progress = spec, settings, timeline, progress
        self.history_url = history_url
        self.symbols = list(spec.symbols or settings.symbols)
        self.defs = self._definitions()
        import dagster as dg

        self.instance = dg.DagsterInstance.ephemeral()
        self.trader: Any = None
        self.store: Any = None
        self.serving: dict[str, str | None] = {}
        self.day_stats = DayStats()
        self.tear_sheet: Path | None = None
        self.seconds: Counter = Counter()  # wall seconds per job (and the stream): where a run's time goes

    # -- the code location, as the daemon loads it, with the simulation's resources -------------------------
    def _definitions(self):
        import dagster as dg

        import assets
        from assets import partitions
        from assets.ml import MLResource
        from orchestration import automation
        from orchestration.definitions import resources

        s = self.settings
        res = resources(s)
        # accelerated: LightGBM only unless asked (the training and gate code are the platform's)
        res["ml"] = MLResource(**{**MLResource.from_settings(s).model_dump(), "use_autogluon": self.spec.autogluon,
                                  "monitor_account": s.account})
        if self.history_url:  # the platform's stored bars through the same market-data assets as the sim's
            src = res["market_source"]
            res["market_source"] = type(src)(kind=src.kind, seed=src.seed, history_start=src.history_start,
                                             structure=src.structure, stored_url=self.history_url)
        self.resources = res
        return dg.Definitions(
            assets=partitions.for_settings(dg.load_assets_from_package_module(assets), s),
            asset_checks=dg.load_asset_checks_from_package_module(assets),
            jobs=automation.JOBS, schedules=automation.schedules(s), sensors=automation.sensors(s), resources=res)

    def _run(self, job: str, *, partition_key: str | None = None, run_config: dict | None = None,
             tags: dict | None = None):
        began = time.monotonic()
        try:
            return self.defs.get_job_def(job).execute_in_process(
                instance=self.instance, partition_key=partition_key, run_config=run_config or {}, tags=tags,
                raise_on_error=False)
        finally:
            self.seconds[job] += time.monotonic() - began

    # -- the daily jobs --------------------------------------------------------------------------------
    def market_data(self, day: date, at: int | None) -> bool:
        from assets.partitions import symbol_key

        rows, quarantined, gaps, failed = 0, 0, 0, []
        for sym in self.symbols:
            result = self._run("market_data_daily", partition_key=f"{day.isoformat()}|{symbol_key(sym)}",
                               run_config=MARKET_DATA_CONFIG)
            if not result.success:
                failed.append(f"{sym}: {step_failure(result)}")
                continue
            meta = _meta(result, "ohlcv_clean")
            rows += int(meta.get("rows", 0))
            quarantined += int(meta.get("quarantined", 0))
            gaps += int(meta.get("gaps", 0))
        if at is not None:
            text = (f"market data {day}: {rows} clean bars of {len(self.symbols) - len(failed)} symbols, "
                    f"{quarantined} quarantined, {gaps} gaps")
            self.timeline.add(at, "market", text + (f"; FAILED {'; '.join(failed)}" if failed else ""))
        return not failed

    def data_docs(self) -> None:
        """The Data Docs site of the market-data checks, with the pages the runs left out."""
        from assets.data_docs import build_site
        from assets.market_data import gx_dirs

        began = time.monotonic()
        try:
            index = build_site(*gx_dirs(self.settings))
        finally:
            self.seconds["data_docs"] += time.monotonic() - began
        self.progress(f"Data Docs of the market-data checks: {index}")

    def features(self, day: date, at: int | None) -> None:
        result = self._run("ml_features_job", partition_key=day.isoformat())
        if at is None:
            return
        if not result.success:
            self.timeline.add(at, "features", f"features {day} failed: {step_failure(result)}")
            return
        f, lab = _meta(result, "ml_features"), _meta(result, "ml_labels")
        self.timeline.add(at, "features", f"features {day}: {f.get('rows')} rows ({f.get('complete_rows')} complete), "
                                          f"{lab.get('rows')} labels")

    def weights(self, day: date, at: int) -> None:
        from storage import db
        from storage.target_weights import weights_as_of

        config = {"ops": {"target_weights": {"config": {"min_days": self.spec.weights_min_days,
                                                        "symbols": self.symbols}}}}
        result = self._run("target_weights_job", partition_key=day.isoformat(), run_config=config)
        if not result.success:
            self.timeline.add(at, "weights", f"optimisation as of {day} refused: {step_failure(result)}")
            return
        meta = _meta(result, "target_weights")
        with db.engine(self.settings.database_url).connect() as conn:
            w = weights_as_of(conn, "main", day)
        shown = ", ".join(f"{s} {w[s]:.3f}" for s in sorted(w))
        self.timeline.add(at, "weights", f"re-weighted portfolio main as of {day} ({meta.get('model')}, "
                                         f"{meta.get('solver_status')}, turnover {float(meta.get('turnover', 0)):.3f}): "
                                         f"{shown}")

    def reports(self, day: date, at: int) -> None:
        config = {"ops": {"tear_sheets": {"config": {"as_of": day.isoformat()}}}}
        result = self._run("daily_reports", run_config=config)
        if not result.success:
            self.timeline.add(at, "report", f"reports as of {day} failed: {step_failure(result)}")
            return
        meta = _meta(result, "tear_sheets")
        self.tear_sheet = Path(str(meta["report_path"]))
        self.timeline.add(at, "report", f"tear sheets as of {day}: {meta.get('strategies')} strategy books, "
                                        f"{meta.get('accounts')} account(s)"
                                        + (" (no trades yet)" if meta.get("no_trades_yet") else ""))

    def retrain(self, at: int, why: str, tags: dict | None = None) -> None:
        result = self._run("retrain", tags=tags)
        ch, gate = _meta(result, "ml_challenger"), _meta(result, "ml_promotion")
        if not ch:
            self.timeline.add(at, "train", f"retrain ({why}) failed, nothing registered: {step_failure(result)}")
            return
        metrics = ch.get("metrics") or {}
        kind = metrics.get("chosen", ch["model_kind"])
        cv = (metrics.get("cv_mean_sharpe") or {}).get(kind, float("nan"))
        hold = ((metrics.get("holdout") or {}).get(kind) or {}).get("sharpe", float("nan"))
        self.timeline.add(at, "train", f"trained challenger v{ch['version']} ({kind}, {why}) on {ch['rows']} rows: "
                                       f"CV Sharpe {float(cv):.3f}, holdout Sharpe {float(hold):.3f}")
        if not gate:
            self.timeline.add(at, "gate", f"gate of v{ch['version']} failed to decide: {step_failure(result)}")
            return
        if gate["promoted"]:
            verdict = f"PROMOTED v{gate['challenger_version']} to champion (was {gate['champion_before']})"
        elif gate["reason"] == "already champion":
            verdict = f"v{gate['challenger_version']} is already champion"
        else:
            verdict = f"REFUSED v{gate['challenger_version']}, champion stays {gate['champion_after']}"
        self.timeline.add(at, "gate", f"{verdict}: {gate['reason']}")
        self.refresh_models(at)

    def tune(self, at: int, history_days: int) -> None:
        strategy = "sma_cross"
        config = {"ops": {"strategy_tuning": {"config": {
            "strategy": strategy, "symbol": self.symbols[0], "n_trials": self.spec.tune_trials,
            "seed": self.spec.seed, "days": min(7, history_days)}}}}  # TuningConfig's 7 days, once there are 7
        result = self._run("tune", run_config=config)
        if not result.success:
            self.timeline.add(at, "tune", f"tuning {strategy} failed: {step_failure(result)}")
            return
        meta = _meta(result, "strategy_tuning")
        best = meta.get("best_params")
        text = (f"tuned {strategy} on {self.symbols[0]} ({meta.get('n_complete')}/{meta.get('n_trials')} trials "
                f"complete): best Sharpe {float(meta.get('best_sharpe', float('nan'))):.3f} with {best}, "
                f"defaults {float(meta.get('default_sharpe', float('nan'))):.3f}")
        # hook: a release gate (issue 13, item 2) records its verdict in the tuning metadata
        release = meta.get("release_decision")
        text += (f"; release gate: {release} ({meta.get('release_reason', '')})" if release
                 else "; no release decision recorded")
        self.timeline.add(at, "tune", text)
        self.follow_releases(at)

    def follow_releases(self, at: int) -> None:
        """The worker's release poller, once: a promoted release is swapped into the slots running its
        strategy (streaming/releases.py, the same code and audit rows as the 24/7 stream)."""
        from streaming.releases import refresh
        from streaming.state import WorkerState

        before = self.trader.slots_view()
        asyncio.run(refresh(WorkerState(trader=self.trader, store=self.store, ready=True)))
        for slot, now in self.trader.slots_view().items():
            if now["release"] != before[slot]["release"] and now["params"] != before[slot]["params"]:
                self.timeline.add(at, "serve", f"stream slot {slot} now runs {now['strategy']} release "
                                               f"v{now['release']} {now['params']}")

    def decay_sensor(self, at: int) -> None:
        import dagster as dg

        from orchestration.automation import decay_sensor

        ctx = dg.build_sensor_context(instance=self.instance, resources=self.resources)
        out = decay_sensor(self.settings)(ctx)
        requests = [out] if isinstance(out, dg.RunRequest) else list(getattr(out, "run_requests", None) or [])
        if isinstance(out, dg.SkipReason) or not requests:
            reason = out.skip_message if isinstance(out, dg.SkipReason) else "no run requested"
            self.timeline.add(at, "decay", f"decay sensor quiet: {reason}")
            return
        for req in requests:
            why = req.tags.get("tradeloop/retrain_reason", "")
            self.timeline.add(at, "decay", f"decay sensor FIRED: {why}")
            self.retrain(at, "decay sensor", tags=dict(req.tags))

    # -- the stream --------------------------------------------------------------------------------------
    def start_stream(self, now_ns: int) -> None:
        from streaming import config as stream_config
        from streaming.store import Store
        from streaming.wiring import build_trader

        self.store = Store(self.settings.database_url, mode=self.settings.mode)
        self.store.ensure_partitions(now_ns)
        trader = build_trader(self.settings)
        # trade exactly the simulation's symbols (build_trader takes them from TRADELOOP_SYMBOLS)
        self.trader = trader
        self.refresh_models(None)
        warmup = max([200] + [t.inner.warmup_bars for t in trader.engine.slots.values()])
        restored = self.store.load(trader.account, list(trader.instruments), exchange=trader.exchange,
                                   interval=stream_config.BAR_INTERVAL, warmup_bars=warmup, now_ns=now_ns)
        trader.restore(restored)
        self.timeline.add(now_ns, "stream", f"stream starts: account {trader.account}, slots "
                                            f"{', '.join(f'{k}={t.inner.name}' for k, t in trader.engine.slots.items())}, "
                                            f"warmed up on {len(restored.bars)} stored bars")

    def refresh_models(self, at: int | None) -> None:
        from streaming.wiring import refresh_models

        asyncio.run(refresh_models(self.trader))
        for slot, strat in self.trader.ml_strategies().items():
            current = strat.champion.current()
            version = current[1] if current else None
            if at is not None and version != self.serving.get(slot):
                self.timeline.add(at, "serve", f"stream slot {slot} now trades {strat.champion.model_name} "
                                               f"v{version}" if version else f"stream slot {slot} has no champion: flat")
            self.serving[slot] = version

    def refresh_weights(self, day: date) -> None:
        for strat in self.trader.weights_strategies().values():
            strat.source.refresh(day)  # the weights valid for trading on ``day`` (as_of < day)

    def load_scenarios(self) -> None:
        s = self.settings
        try:
            syms, returns, info = self.store.load_scenarios(
                self.trader.exchange, sorted(self.trader.instruments), interval=s.var_source_interval,
                step=s.var_scenario_step, count=s.var_scenarios, min_count=s.var_min_scenarios)
            self.trader.set_scenarios(syms, returns, info)
        except Exception as exc:  # noqa: BLE001 -- as the worker: no VaR is no reason not to trade
            self.trader.scenarios = {**self.trader.scenarios, "error": f"{type(exc).__name__}: {exc}"}

    def stream(self, prints: list, until_ns: int, pos: int) -> int:
        """Feed ``prints[pos:]`` up to (not including) ``until_ns``; store batches as the worker does."""
        trader, n = self.trader, len(prints)
        every = self.spec.drain_every_bars
        began = time.monotonic()
        while pos < n and prints[pos].exchange_ts < until_ns:
            trader.on_tick(prints[pos])
            pos += 1
            if len(trader.out.bars) >= every:
                self.drain()
        self.drain()
        self.seconds["stream"] += time.monotonic() - began
        return pos

    def drain(self) -> None:
        batch = self.trader.drain()
        if not (batch or batch.positions):
            return
        self.store.write(batch)
        st = self.day_stats
        st.bars += len(batch.bars)
        st.orders += len(batch.orders)
        for f in batch.fills:
            st.fills[f.strategy] += 1
        for t in batch.transitions:
            self.timeline.add(t.ts, "risk", f"{t.scope}: {t.old.value} -> {t.new.value} ({t.reason}, by {t.who})")

    def day_summary(self, day: date, at: int, equity_before: Decimal) -> Decimal:
        st, trader = self.day_stats, self.trader
        equity = trader.portfolio.equity()
        change = (equity / equity_before - 1) * 100 if equity_before else Decimal(0)
        fills = ", ".join(f"{k} {v}" for k, v in sorted(st.fills.items())) or "none"
        flat = {slot: s.flat_reason for slot, s in trader.model_driven_strategies().items() if s.flat_reason}
        text = (f"day {day}: {st.bars} bars, {st.orders} orders, fills: {fills}; equity {equity:,.2f} "
                f"({change:+.3f}%), state {trader.state.value}")
        if flat:
            text += "; flat: " + "; ".join(f"{k} ({v})" for k, v in sorted(flat.items()))
        self.timeline.add(at, "stream", text)
        self.day_stats = DayStats()
        return equity

    # -- the clock ----------------------------------------------------------------------------------------
    def run(self) -> None:
        import polars as pl

        from orchestration.simulation.feed import bar_prints

        spec = self.spec
        first = spec.first_history_day
        self.progress(f"history: {spec.warmup_days} warm-up days from {first} x {len(self.symbols)} symbols")
        for k in range(spec.warmup_days - 1):  # the last warm-up day goes through day 0's schedule
            day = first + timedelta(days=k)
            if not self.market_data(day, _ns(day + timedelta(days=1), 0, 10)):
                raise SimulationError(f"market data of warm-up day {day} failed: see the log")
            self.features(day, None)
        self.start_stream(_ns(spec.start))
        source = self.resources["market_source"]
        equity = self.trader.portfolio.equity()
        wall = time.monotonic()
        for i in range(spec.days):
            day = spec.start + timedelta(days=i)
            prev = day - timedelta(days=1)
            last_day = i == spec.days - 1
            bars = pl.concat([source.fetch_bars(sym, "1m", _ns(day), _ns(day) + DAY_NS)[0] for sym in self.symbols])
            prints = list(bar_prints(bars))
            pos = 0
            schedule: list[tuple[int, Callable[[int], Any]]] = [
                (10, lambda at: self.market_data(prev, at)),
                (30, lambda at: (self.weights(prev, at), self.refresh_weights(day))),
                (40, lambda at: self.features(prev, at)),
                (45, self.decay_sensor),
            ]
            if spec.report_every_days and i % spec.report_every_days == 0 and i > 0:
                schedule.append((35, lambda at: self.reports(prev, at)))
            if i % spec.retrain_every_days == 0:
                schedule.append((150, lambda at: self.retrain(at, "scheduled")))
            if i % spec.tune_every_days == 0:
                schedule.append((180, lambda at: self.tune(at, spec.warmup_days + i)))
            for minute, step in sorted(schedule, key=lambda x: x[0]):
                at = _ns(day) + minute * MINUTE_NS
                pos = self.stream(prints, at, pos)
                step(at)
            self.store.ensure_partitions(_ns(day))
            self.load_scenarios()
            pos = self.stream(prints, _ns(day) + DAY_NS, pos)
            equity = self.day_summary(day, _ns(day) + DAY_NS - MINUTE_NS, equity)
            self.progress(f"day {i + 1}/{spec.days} {day} done ({time.monotonic() - wall:.0f} s)")
            if last_day:  # the closing jobs of the last day, then its reports
                end = day + timedelta(days=1)
                self.market_data(day, _ns(end, 0, 10))
                self.reports(day, _ns(end, 0, 35))
                self.data_docs()
        self.store.close()
        self.progress("time by step: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.most_common()))
