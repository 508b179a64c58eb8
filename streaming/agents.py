"""The worker's agents: ``trade``, the hot path over ``market.ticks``, and ``control``, operator actions
sent as signed messages (the same actions as POST /control/{action}; streaming/control.py verifies them)."""

from __future__ import annotations

import logging
import time

import faust
import orjson

from streaming import metrics, wiring
from streaming import records as rec
from streaming.app import app, control_topic, out, settings, ticks_topic, worker
from streaming.control import receive
from streaming.intake import park, tick_items
from streaming.outbox import flush
from streaming.signing import ControlRefused
from trading.records import Tick

log = logging.getLogger(__name__)
BATCH_MESSAGES = 2000  # messages taken per batch (a message may hold 200 ticks), or stream_batch_window_s
FLUSH_TICKS = 5000  # effects are stored and published at least every this many ticks


@app.agent(ticks_topic)
async def trade(stream: faust.StreamT) -> None:
    """The hot path: ticks -> Trader, in batches; effects stored, then published, then ticks acked."""
    trader = await wiring.start_trader(worker, settings)
    traded = trader.instruments
    perf = time.perf_counter
    observe = metrics.DECISION_SECONDS.observe
    from_data = rec.from_data
    on_tick = trader.on_tick
    deadletter = out.deadletter
    async for events in stream.take_events(BATCH_MESSAGES, within=settings.stream_batch_window_s):
        n = 0  # ticks traded, not messages: a message may carry a batch of ticks
        unflushed = 0
        for event in events:
            try:
                items, batched = tick_items(event.value)
            except Exception as exc:  # noqa: BLE001 -- a poisoned message must not stop the agent
                await park(deadletter, event, f"{type(exc).__name__}: {exc}")
                continue
            key = event.message.key
            for i, item in enumerate(items):
                try:
                    tick = from_data(Tick, item)
                    if batched and key and tick.symbol.encode() != key:
                        # one symbol's ticks must reach one worker (its bars): a stray one could reach another
                        raise rec.RecordError(f"symbol {tick.symbol!r} in a batch keyed {key!r}")
                    if tick.symbol not in traded:
                        _not_traded(tick.symbol)
                        continue
                    t0 = perf()
                    on_tick(tick)
                    observe(perf() - t0)
                    n += 1
                except Exception as exc:  # noqa: BLE001 -- one poisoned tick: parked alone, its neighbours trade
                    if batched:
                        await park(deadletter, event, f"element {i} of {len(items)}: {type(exc).__name__}: {exc}",
                                   orjson.dumps(item))
                    else:
                        await park(deadletter, event, f"{type(exc).__name__}: {exc}")
            unflushed += len(items)
            if unflushed >= FLUSH_TICKS:  # bounds a transaction and the effects' delay; acks still follow all
                metrics.TICKS.inc(n)
                n = unflushed = 0
                await flush(trader)
        metrics.TICKS.inc(n)
        await flush(trader)


def _not_traded(symbol: str) -> None:
    """A tick of a symbol outside TRADELOOP_SYMBOLS: counted and skipped (said once per symbol)."""
    metrics.TICKS_NOT_TRADED.labels(symbol).inc()
    if symbol not in worker.ignored_symbols:
        worker.ignored_symbols.add(symbol)
        log.warning("ticks of %s are skipped: this worker trades %s (TRADELOOP_SYMBOLS)", symbol,
                    ", ".join(settings.symbols))


@app.agent(control_topic)
async def control(stream: faust.StreamT) -> None:
    """Operator actions sent as signed messages (the web API applies the same actions directly). A refused
    message is counted and audited by ``receive`` and then dropped: parking it would only copy it elsewhere."""
    async for event in stream.events():
        msg = event.message
        try:
            await receive(event.value, f"topic:{msg.topic}", refusal_id=(msg.topic, msg.partition, msg.offset),
                          refusal_ts_ns=int(msg.timestamp * 1e9) if msg.timestamp else None)
        except ControlRefused:
            pass
        except Exception as exc:  # noqa: BLE001 -- verified but not applicable (ControlError), or a failure
            await park(out.deadletter, event, f"{type(exc).__name__}: {exc}")
