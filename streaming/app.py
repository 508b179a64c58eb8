"""The Faust application. Run a worker with `faust -A streaming.app worker` (or `tradeloop up`).

Settings come from deploy.settings (TRADELOOP_* / KAFKA_BOOTSTRAP). Broker timeouts are shortened so
that a worker joins its group in seconds, not the 30 s Faust's defaults cost (INFRA-NOTES), and the
guarantee is at-least-once with idempotent effects: the embedded broker does not support
transactional producers.
"""

from __future__ import annotations

import time

import faust

from deploy.settings import get_settings

settings = get_settings()
bootstrap = settings.kafka_bootstrap or f"{settings.host}:{settings.broker_port}"

app = faust.App(
    "tradeloop",
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
)

ticks_topic = app.topic("market.ticks", value_type=bytes, value_serializer="raw")

_started = {"ready": False, "since": time.time(), "ticks": 0}


@app.agent(ticks_topic)
async def count_ticks(stream):
    """Minimal agent for the foundation: counts ticks; the trading hot path replaces it (#6)."""
    async for _ in stream:
        _started["ticks"] += 1


@app.task
async def mark_ready() -> None:
    # tasks start once the app's services (consumer, agents, web) are up
    _started["ready"] = True


@app.page("/health")
async def health(web, request):
    return web.json({"status": "ok", "uptime_s": round(time.time() - _started["since"], 1)})


@app.page("/ready")
async def ready(web, request):
    body = {"ready": _started["ready"], "ticks": _started["ticks"]}
    return web.json(body, status=200 if _started["ready"] else 503)
