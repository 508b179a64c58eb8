"""What needs time to pass rather than ticks: the risk monitor, partition upkeep, model, weights and
strategy release refresh, the flush of effects that happen without a tick (a kill switch's flatten), and readiness after
the rebuild."""

from __future__ import annotations

import asyncio
import logging
import time

from streaming import releases, wiring
from streaming.app import app, settings, worker
from streaming.outbox import flush, update_gauges

log = logging.getLogger(__name__)


@app.timer(interval=5.0)
async def risk_monitor() -> None:
    """Breakers, stale data and day roll-over need time to pass, not ticks; P&L/VaR go to risk_metrics."""
    trader = worker.trader
    if trader is None:
        return
    if time.monotonic() - worker.scenarios_at >= settings.var_refresh_s:
        try:
            await wiring.load_scenarios(worker, settings)
        except Exception as exc:  # noqa: BLE001 -- VaR must not stop the breakers below; the reason is shown
            trader.scenarios = {**trader.scenarios, "error": f"scenario reload failed: {type(exc).__name__}: {exc}"}
            worker.scenarios_at = time.monotonic()
            log.exception("VaR scenario reload failed")
    trader.risk.evaluate()
    m = trader.risk.metrics()
    await asyncio.to_thread(worker.store.write_risk_metrics, trader.account, m, time.time_ns())
    await flush(trader)


@app.timer(interval=3600.0)
async def partition_upkeep() -> None:
    """Next month's partitions exist well before the month starts (a 24/7 worker outlives its start-up's)."""
    if worker.store is not None:
        await asyncio.to_thread(worker.store.ensure_partitions, time.time_ns())


@app.timer(interval=settings.model_poll_interval_s)
async def model_poller() -> None:
    """Registry polling of the ML slots (champion, and challenger in shadow mode); no restart needed."""
    trader = worker.trader
    if trader is not None and trader.ml_strategies():
        await wiring.refresh_models(trader)
        update_gauges(trader)


@app.timer(interval=settings.release_poll_interval_s)
async def release_poller() -> None:
    """strategy_releases polling: a promoted (or rolled-back-to) release is swapped into the slots running
    its strategy, a candidate's shadow started or stopped -- no restart (streaming/releases.py)."""
    if worker.trader is not None:
        try:
            await releases.refresh(worker)
        except Exception:  # noqa: BLE001 -- a failed poll keeps the running releases; the next one retries
            log.exception("release poll failed")


@app.timer(interval=settings.history_rewarm_interval_s)
async def history_rewarm() -> None:
    """A strategy still warming up is rebuilt from market_data_clean once the store has bars it has not seen
    (a first start's backfill finishes after the worker started): streaming/wiring.py."""
    if worker.trader is not None:
        try:
            await wiring.rewarm_from_history(worker, settings)
        except Exception:  # noqa: BLE001 -- the live warm-up goes on; the next tick retries
            log.exception("re-warm from market_data_clean failed")


@app.timer(interval=min(1.0, settings.weights_poll_interval_s))
async def weights_poller() -> None:
    """target_weights of the target_rebalance slots (streaming/portfolio_strategy.py), read in a thread so
    a query never stalls the hot path.  Ticks every second so the first read follows start-up at once;
    each source queries only when due (weights_poll_interval_s, a new trading day, or not read yet)."""
    if worker.trader is not None:
        await wiring.refresh_weights(worker.trader)


@app.timer(interval=0.2)
async def venue_poll() -> None:
    """Sandbox/live: what the exchange reported between ticks (the adapter's socket and REST fallback),
    unknown orders' queries and the venue's health, then stored at once."""
    trader = worker.trader
    if trader is None or worker.venue is None:
        return
    async with worker.lock:
        trader.poll_venue()  # the OMS keeps the market's clock; unknown-order back-off runs on its own
    await flush(trader)


@app.on_before_shutdown.connect
async def close_venue(app, **kwargs) -> None:
    """Sandbox/live: stop reconciling and close the exchange adapter's connections (its open orders stay at the
    exchange; the next start asks about them)."""
    if worker.recon_task is not None:
        worker.recon_task.cancel()
    if worker.venue is not None:
        await worker.venue.close()


@app.timer(interval=1.0)
async def flush_idle() -> None:
    if worker.trader is not None:
        await flush(worker.trader)


@app.task
async def mark_ready() -> None:
    # tasks start once the app's services (consumer, agents, web) are up; ready once rebuilt from Postgres
    try:
        await wiring.start_trader(worker, settings)
    except Exception as exc:  # noqa: BLE001 -- reported by /ready, the worker stays up to say why
        worker.error = f"{type(exc).__name__}: {exc}"
        log.exception("could not start the trader")
        return
    worker.ready = True
