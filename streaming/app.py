"""The Faust application. Run a worker with `faust -A streaming.app worker` (or `tradeloop up`).

Agents
  * ``trade``   -- the hot path, one agent over every assigned partition of ``market.ticks``: each batch
                   of ticks goes through streaming.trader.Trader in process (bars, strategies, risk,
                   paper fills); the batch's effects are written to Postgres in one idempotent
                   transaction, then published (signals, orders.requests, orders.events, executions,
                   positions, market.bars, risk.alerts) and only then are the ticks acknowledged.
  * ``control`` -- operator actions arriving on the ``control`` topic (same actions as the web API).
  * timers     -- the risk monitor (breakers, stale data, VaR, risk_metrics rows) and a flush of effects
                   that happen without a tick (kill switch, flatten).

Postgres is the system of record: on start the worker rebuilds positions, open orders, strategy state
and a standing kill switch from it (streaming.store.Store.load), not from a changelog (the embedded
broker's changelog recovery is unreliable, INFRA-NOTES).  At-least-once with idempotent effects; the
embedded broker does not support transactional producers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from decimal import Decimal
from typing import Any

import faust
import orjson

from deploy.settings import get_settings
from streaming import config, metrics
from streaming import records as rec
from streaming.topics import DEADLETTER, TOPICS  # noqa: F401
from streaming.transport import set_fetch_max_wait
from trading.records import Tick

log = logging.getLogger(__name__)
settings = get_settings()
bootstrap = settings.kafka_bootstrap or f"{settings.host}:{settings.broker_port}"

app = faust.App(
    settings.stream_app_id,
    broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
    store="memory://",
    topic_partitions=settings.topic_partitions,
    topic_allow_declare=False,  # topics are created explicitly by `tradeloop up` (streaming.topics)
    processing_guarantee="at_least_once",
    broker_session_timeout=6,
    broker_heartbeat_interval=0.5,
    broker_rebalance_timeout=6,
    web_host=settings.host,
    web_port=settings.worker_port,
    web_in_thread=False,
    value_serializer="orjson",
    # a flush publishes a batch's effects in one go (~0.2 messages per tick); at Faust's 16 KiB a partition's
    # batch fills and each send waits for a broker round trip before the next: half the worker's time idle
    producer_max_batch_size=512 * 1024,
)
set_fetch_max_wait(settings.stream_fetch_max_wait_ms)


def _topic(name: str, value_type: Any = None) -> faust.TopicT:
    name = settings.topic_prefix + name
    if value_type is None:  # consumed raw: we decode ourselves so a poisoned message can be parked
        return app.topic(name, value_type=bytes, value_serializer="raw", key_serializer="raw")
    return app.topic(name, value_type=value_type, key_type=str, key_serializer="raw")


ticks_topic = _topic("market.ticks")
control_topic = _topic("control")
out = {
    "bars": _topic("market.bars", rec.BarRecord),
    "signals": _topic("signals", rec.Signal),
    "orders": _topic("orders.requests", rec.OrderRequestRecord),
    "events": _topic("orders.events", rec.OrderEventRecord),
    "fills": _topic("executions", rec.FillRecord),
    "positions": _topic("positions", rec.PositionRecord),
    "alerts": _topic("risk.alerts", rec.RiskAlert),
    "deadletter": _topic(DEADLETTER, rec.DeadLetter),
}

state: dict[str, Any] = {"ready": False, "since": time.time(), "trader": None, "store": None,
                         "lock": None, "rejects_seen": {}, "error": None}


# -- wiring ------------------------------------------------------------------------------------------

def build_trader() -> Any:
    """The account's Trader with the configured strategies, limits and the sim venue's instruments."""
    from trading.marketdata.sim import SimVenue, anchored_config
    from trading.risk import RiskLimits, load_limits
    from trading.sizing import FixedFraction
    from streaming.trader import Trader

    limits = load_limits(settings.risk_limits) if settings.risk_limits else RiskLimits.from_dict(config.LIMITS)
    sim = SimVenue(anchored_config(settings.sim_seed, settings.history_start, exchange=settings.stream_exchange))
    instruments = {i.symbol: i for i in sim.instruments()}
    chosen = settings.stream_strategies or config.STRATEGIES
    factory = strategy_factory(sorted(instruments))
    strategies = {slot: factory(name, params) for slot, (name, params) in chosen.items()}
    return Trader(settings.account, strategies, cash=config.CASH, limits=limits, instruments=instruments,
                  sizer=FixedFraction(config.FRACTION_PER_SYMBOL), interval=config.BAR_INTERVAL,
                  exchange=settings.stream_exchange, mode=settings.mode, factory=factory)


def strategy_factory(symbols: list[str]) -> Any:
    """(name, params) -> strategy; ``ml_signal`` (the MLflow champion, streaming.ml_strategy) and
    ``target_rebalance`` (target_weights, streaming.portfolio_strategy) are refreshed off the event loop
    by the ``model_poller`` and ``weights_poller`` timers."""
    from streaming.ml_strategy import create_stream_strategy

    def make(name: str, params: dict | None) -> Any:
        return create_stream_strategy(name, params, model_name=settings.model_name, tracking_uri=settings.tracking_uri,
                                      poll_interval_s=settings.model_poll_interval_s, symbols=symbols,
                                      interval=config.BAR_INTERVAL, inline_refresh=False)

    return make


async def start_trader() -> Any:
    """Build the Trader and rebuild it from Postgres (once per process).

    The agent, the ready task and control actions all call this at start-up; the build awaits (registry,
    Postgres), so without one shared build two callers would each build a Trader and the views (/risk,
    /model) could read a different one from the one trading.  A failed build is forgotten so that the
    next caller retries it."""
    if state["trader"] is not None:
        return state["trader"]
    building = state.get("building")
    if building is None:
        building = state["building"] = asyncio.ensure_future(_build_trader())
    try:
        return await asyncio.shield(building)  # one caller cancelled must not cancel the shared build
    except Exception:
        if state.get("building") is building:
            state["building"] = None
        raise


async def _build_trader() -> Any:
    from streaming.store import Store

    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set: the stream needs Postgres, its system of record")
    store = Store(settings.database_url, mode=settings.mode)
    trader = build_trader()
    await refresh_models(trader)  # before the warm-up, so the first live bar is scored by the current champion
    # ML features need a longer warm-up than the rule-based strategies (regime fit window)
    warmup = max([200] + [t.inner.warmup_bars for t in trader.engine.slots.values()])
    restored = await asyncio.to_thread(store.load, trader.account, list(trader.instruments),
                                       exchange=trader.exchange, interval=config.BAR_INTERVAL,
                                       warmup_bars=warmup, now_ns=time.time_ns())
    trader.restore(restored)
    state.update(store=store, lock=asyncio.Lock(), trader=trader)
    try:
        await load_scenarios(trader)
    except Exception as exc:  # noqa: BLE001 -- no VaR is no reason not to trade; the reason is in GET /risk
        trader.scenarios = {**trader.scenarios, "error": f"scenario load failed: {type(exc).__name__}: {exc}"}
        state["scenarios_at"] = time.monotonic()
        log.exception("VaR scenario load failed")
    log.info("trader %s restored: %d fills, %d known orders, %d warm-up bars, halted=%s", trader.account,
             len(restored.fills), len(restored.known_order_ids), len(restored.bars), restored.halted)
    return trader


async def flush(trader: Any) -> None:
    """Write the trader's effects to Postgres (retrying while it is down), then publish them."""
    async with state["lock"]:
        batch = trader.drain()
        if not (batch or batch.positions):
            return
        t0 = time.perf_counter()
        await asyncio.to_thread(state["store"].write, batch)
        metrics.BATCH_WRITE_SECONDS.observe(time.perf_counter() - t0)
        metrics.STORE_RETRIES.set(state["store"].retries)
        acct = trader.account
        for b in batch.bars:
            await out["bars"].send(key=b.symbol.encode(), value=rec.to_record(b))
        for s in batch.signals:
            await out["signals"].send(key=s.symbol.encode(), value=rec.Signal(
                s.signal_id, acct, s.strategy, s.symbol, s.target, s.ts, s.model_name, s.model_version,
                s.score, s.shadow))
        for o in batch.orders:
            await out["orders"].send(key=acct.encode(), value=rec.to_record(o))
        for e in batch.events:
            metrics.ORDERS.labels(e.status.value).inc()
            await out["events"].send(key=acct.encode(), value=rec.to_record(e))
        for f in batch.fills:
            metrics.FILLS.inc()
            await out["fills"].send(key=acct.encode(), value=rec.to_record(f))
        for p in batch.positions:
            await out["positions"].send(key=acct.encode(), value=rec.to_record(p))
        for t in batch.transitions:
            await out["alerts"].send(key=acct.encode(), value=rec.RiskAlert(
                acct, t.scope, t.old.value, t.new.value, t.reason, t.who, t.ts))
        _update_gauges(trader)


def _update_gauges(trader: Any) -> None:
    seen = state["rejects_seen"]
    for reason, n in trader.engine.rejected.items():
        if n > seen.get(reason, 0):
            metrics.REJECTS.labels(reason).inc(n - seen.get(reason, 0))
            seen[reason] = n
    p = trader.portfolio
    metrics.PNL.labels("realized").set(float(p.realized_pnl))
    metrics.PNL.labels("unrealized").set(float(p.unrealized_pnl()))
    metrics.PNL.labels("equity").set(float(p.equity()))
    metrics.STATE.set({"active": 0, "reducing": 1, "halted": 2}[trader.state.value])
    for slot, strat in trader.ml_strategies().items():
        for m in strat.models():
            st = m.status
            metrics.MODEL_VERSION.labels(slot, m.alias).set(float(st["version"] or 0))
            metrics.MODEL_WARNING.labels(slot, m.alias).set(1.0 if st["warning"] else 0.0)
        metrics.MODEL_FLAT.labels(slot).set(1.0 if strat.flat_reason else 0.0)
    metrics.VAR_SCENARIOS.set(float(trader.scenarios.get("count", 0)))


async def refresh_models(trader: Any) -> None:
    """Ask the registry for every ML slot's aliases, in a thread: a registry call or a model load must
    not stall the hot path.  ChampionModel swaps a new version in with one assignment, so the agent
    sees the old or the new model for a whole bar, never a mix; an outage keeps the last model."""
    for strat in trader.ml_strategies().values():
        for m in strat.models():
            await asyncio.to_thread(m.refresh)


async def load_scenarios(trader: Any) -> None:
    """VaR scenarios of the traded symbols from market_data_clean into the risk engine (or why not)."""
    from streaming.scenarios import now_iso

    syms, returns, info = await asyncio.to_thread(
        state["store"].load_scenarios, trader.exchange, sorted(trader.instruments),
        interval=settings.var_source_interval, step=settings.var_scenario_step, count=settings.var_scenarios,
        min_count=settings.var_min_scenarios)
    info["loaded_at"] = now_iso()
    if info.get("error") and info["error"] != trader.scenarios.get("error"):
        log.warning("VaR: %s", info["error"])  # once per new reason, not every reload
    trader.set_scenarios(syms, returns, info)
    state["scenarios_at"] = time.monotonic()

async def park(event: Any, error: str, value: bytes | None = None) -> None:
    """Count a message that cannot be processed and park it, with the error, on the deadletter topic.
    ``value``: the part of the message that failed (one element of a tick array), instead of all of it."""
    msg = event.message
    metrics.DEADLETTERS.labels(msg.topic).inc()
    if value is None:
        value = msg.value if isinstance(msg.value, (bytes, bytearray)) else repr(msg.value).encode()
    key = msg.key if isinstance(msg.key, (bytes, bytearray)) else b""
    await out["deadletter"].send(key=key or None, value=rec.DeadLetter(
        msg.topic, msg.partition, msg.offset, key.decode("utf-8", "replace"), value.decode("utf-8", "replace"),
        error[:2000], time.time_ns()))
    log.warning("parked %s[%d]@%d on %s: %s", msg.topic, msg.partition, msg.offset, DEADLETTER, error)


def tick_items(raw: bytes) -> tuple[list, bool]:
    """The tick objects of one ``market.ticks`` value, and whether it was an array (a producer's
    micro-batch of one symbol, streaming/producers.py) rather than one bare tick object.  Raises for
    anything else, which is then parked whole."""
    data = orjson.loads(raw)
    if type(data) is list:
        if not data:
            raise rec.RecordError("an empty array of ticks")
        return data, True
    if type(data) is dict:
        return [data], False
    raise rec.RecordError(f"expected a tick object or an array of ticks, got {type(data).__name__}")


def decode_tick(raw: bytes) -> Tick:
    """One tick of the bare-object format."""
    return rec.from_data(Tick, orjson.loads(raw))


FLUSH_TICKS = 5000  # effects are stored and published at least every this many ticks (a message may hold 200)


# -- agents --------------------------------------------------------------------------------------------

@app.agent(ticks_topic)
async def trade(stream: faust.StreamT) -> None:
    """The hot path: ticks -> Trader, in batches; effects stored, then published, then ticks acked."""
    trader = await start_trader()
    perf = time.perf_counter
    observe = metrics.DECISION_SECONDS.observe
    from_data = rec.from_data
    async for events in stream.take_events(2000, within=settings.stream_batch_window_s):
        n = 0  # ticks traded, not messages: a message may carry a batch of ticks
        unflushed = 0
        for event in events:
            try:
                items, batched = tick_items(event.value)
            except Exception as exc:  # noqa: BLE001 -- a poisoned message must not stop the agent
                await park(event, f"{type(exc).__name__}: {exc}")
                continue
            key = event.message.key
            for i, item in enumerate(items):
                try:
                    tick = from_data(Tick, item)
                    if batched and key and tick.symbol.encode() != key:
                        # one symbol's ticks must reach one worker (its bars): a stray one could reach another
                        raise rec.RecordError(f"symbol {tick.symbol!r} in a batch keyed {key!r}")
                    t0 = perf()
                    trader.on_tick(tick)
                    observe(perf() - t0)
                    n += 1
                except Exception as exc:  # noqa: BLE001 -- one poisoned tick: parked alone, its neighbours trade
                    if batched:
                        await park(event, f"element {i} of {len(items)}: {type(exc).__name__}: {exc}",
                                   orjson.dumps(item))
                    else:
                        await park(event, f"{type(exc).__name__}: {exc}")
            unflushed += len(items)
            if unflushed >= FLUSH_TICKS:  # bounds a transaction and the effects' delay; acks still follow all
                metrics.TICKS.inc(n)
                n = unflushed = 0
                await flush(trader)
        metrics.TICKS.inc(n)
        await flush(trader)


@app.agent(control_topic)
async def control(stream: faust.StreamT) -> None:
    """Operator actions sent as messages (the web API applies the same actions directly)."""
    async for event in stream.events():
        try:
            cmd = rec.Control.from_data(orjson.loads(event.value))
            await apply_control(cmd)
        except Exception as exc:  # noqa: BLE001
            await park(event, f"{type(exc).__name__}: {exc}")


class ControlError(ValueError):
    pass


async def apply_control(cmd: rec.Control) -> dict:
    """Apply one operator action to the trader, write it to audit_log (who, why), flush its effects."""
    from trading.records import stable_id

    trader = await start_trader()
    if cmd.account != trader.account:
        raise ControlError(f"control for account {cmd.account!r}, this worker trades {trader.account!r}")
    if not cmd.who:
        raise ControlError("control action needs `who`")
    params = orjson.loads(cmd.params or "{}")
    if not isinstance(params, dict):
        raise ControlError("params must be a JSON object")
    if cmd.action == "kill_switch":
        trader.kill_switch(cmd.reason or "operator", cmd.flatten, cmd.who)
    elif cmd.action == "resume":
        trader.resume(cmd.reason or "operator", cmd.who)
    elif cmd.action == "swap_strategy":
        trader.swap_strategy(cmd.slot, cmd.strategy, params)
    elif cmd.action == "set_limits":
        trader.set_limits(params)
    else:
        raise ControlError(f"unknown control action {cmd.action!r} "
                           "(kill_switch, resume, swap_strategy, set_limits)")
    ts = cmd.ts or time.time_ns()
    event_id = cmd.command_id or stable_id("control", cmd.action, cmd.who, ts)
    details = {"flatten": cmd.flatten, "slot": cmd.slot, "strategy": cmd.strategy, "params": params}
    await asyncio.to_thread(state["store"].audit, event_id, ts, cmd.who, cmd.action, f"account:{trader.account}",
                            cmd.reason, details)
    await flush(trader)
    return {"ok": True, "action": cmd.action, "state": trader.state.value, "event_id": event_id}


@app.timer(interval=5.0)
async def risk_monitor() -> None:
    """Breakers, stale data and day roll-over need time to pass, not ticks; P&L/VaR go to risk_metrics."""
    trader = state["trader"]
    if trader is None:
        return
    if time.monotonic() - state.get("scenarios_at", 0.0) >= settings.var_refresh_s:
        try:
            await load_scenarios(trader)
        except Exception as exc:  # noqa: BLE001 -- VaR must not stop the breakers below; the reason is shown
            trader.scenarios = {**trader.scenarios, "error": f"scenario reload failed: {type(exc).__name__}: {exc}"}
            state["scenarios_at"] = time.monotonic()
            log.exception("VaR scenario reload failed")
    trader.risk.evaluate()
    m = trader.risk.metrics()
    await asyncio.to_thread(state["store"].write_risk_metrics, trader.account, m, time.time_ns())
    await flush(trader)


@app.timer(interval=settings.model_poll_interval_s)
async def model_poller() -> None:
    """Registry polling of the ML slots (champion, and challenger in shadow mode); no restart needed."""
    trader = state["trader"]
    if trader is not None and trader.ml_strategies():
        await refresh_models(trader)
        _update_gauges(trader)


@app.timer(interval=min(1.0, settings.weights_poll_interval_s))
async def weights_poller() -> None:
    """target_weights of the target_rebalance slots (streaming/portfolio_strategy.py), read in a thread so
    a query never stalls the hot path.  Ticks every second so the first read follows start-up at once;
    each source queries only when due (weights_poll_interval_s, a new trading day, or not read yet)."""
    trader = state["trader"]
    if trader is not None:
        for tap in list(trader.engine.slots.values()):  # a swap_strategy may change the slots meanwhile
            if hasattr(tap.inner, "refresh_weights"):
                await asyncio.to_thread(tap.inner.refresh_weights)


@app.timer(interval=1.0)
async def flush_idle() -> None:
    if state["trader"] is not None:
        await flush(state["trader"])


@app.task
async def mark_ready() -> None:
    # tasks start once the app's services (consumer, agents, web) are up; ready once rebuilt from Postgres
    try:
        await start_trader()
    except Exception as exc:  # noqa: BLE001 -- reported by /ready, the worker stays up to say why
        state["error"] = f"{type(exc).__name__}: {exc}"
        log.exception("could not start the trader")
        return
    state["ready"] = True


# -- web ---------------------------------------------------------------------------------------------

@app.page("/health")
async def health(web, request):
    return web.json({"status": "ok", "uptime_s": round(time.time() - state["since"], 1)})


@app.page("/ready")
async def ready(web, request):
    trader = state["trader"]
    body = {"ready": state["ready"], "ticks": trader.counters["ticks"] if trader else 0, "error": state["error"]}
    return web.json(body, status=200 if state["ready"] else 503)


@app.page("/metrics")
async def metrics_page(web, request):
    if state["trader"] is not None:
        _update_gauges(state["trader"])
    return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


def _json(web: Any, body: Any, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(body, default=str), content_type="application/json", status=status)


def _trader_view(web: Any, view: Any) -> Any:
    """``view(trader)`` as JSON, or 503 until the worker has rebuilt its Trader from Postgres."""
    trader = state["trader"]
    if trader is None:
        return _json(web, {"error": "not ready"}, 503)
    return _json(web, view(trader))


@app.page("/positions")
async def positions_page(web, request):
    return _trader_view(web, lambda t: {"account": t.account, "positions": t.positions_view()})


@app.page("/orders")
async def orders_page(web, request):
    return _trader_view(web, lambda t: {"account": t.account, "open_orders": t.open_orders_view()})


@app.page("/risk")
async def risk_page(web, request):
    return _trader_view(web, lambda t: t.risk_view())


def _model_view(trader: Any) -> dict:
    slots = {slot: s.view() for slot, s in trader.ml_strategies().items()}
    return {"account": trader.account, "model_name": settings.model_name, "tracking_uri": settings.tracking_uri,
            "poll_interval_s": settings.model_poll_interval_s, "slots": slots,
            **({} if slots else {"note": "no ml_signal or target_rebalance slot configured"})}


@app.page("/model")
async def model_page(web, request):
    """What each model-driven slot serves: versions, alias status, registry warnings, why it is flat,
    last scores; for target_rebalance slots, the target_weights they hold."""
    return _trader_view(web, _model_view)


@app.page("/control/{action}")
class ControlView(faust.web.View):
    """POST /control/kill_switch|resume|swap_strategy|set_limits with a bearer token; JSON body:
    {"who": ..., "reason": ..., "flatten": bool, "slot": ..., "strategy": ..., "params": {...}}."""

    async def post(self, request, action: str):
        auth = request.headers.get("Authorization", "")
        token = settings.get_control_token()
        if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:].encode(), token.encode()):
            return _json(self.web, {"error": "missing or wrong bearer token"}, 401)
        try:
            body = orjson.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise ControlError("body must be a JSON object")
            cmd = rec.Control(
                command_id=str(body.get("command_id", "")), action=action.replace("-", "_"),
                account=str(body.get("account", settings.account)), who=str(body.get("who", "")),
                reason=str(body.get("reason", "")), flatten=bool(body.get("flatten", False)),
                slot=str(body.get("slot", "")), strategy=str(body.get("strategy", "")),
                params=orjson.dumps(body.get("params", {})).decode(), ts=time.time_ns())
            result = await apply_control(cmd)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _json(self.web, {"error": f"{type(exc).__name__}: {exc}"}, 400)
        return _json(self.web, result)
