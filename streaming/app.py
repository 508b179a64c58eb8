"""The Faust application. Run a worker with `faust -A streaming.app worker` (or `tradeloop up`).

This module holds the app, its topics and the worker's state; the rest is found by autodiscovery:
  streaming/agents.py  ``trade``: the hot path, ticks -> streaming.trader.Trader in batches; ``control``:
                       operator actions sent as messages
  streaming/timers.py  risk monitor (breakers, stale data, VaR, risk_metrics rows), model and weights
                       refresh, the flush of effects that happen without a tick, readiness
  streaming/web.py     /health /ready /metrics /positions /orders /risk /model and POST /control/{action}
and the agents, timers and pages use
  streaming/wiring.py  the Trader built from the settings and rebuilt from Postgres
  streaming/intake.py  decoding ticks; parking what cannot be processed on ``deadletter``
  streaming/outbox.py  a batch's effects stored in Postgres, then published (the agent acks after)
  streaming/control.py the operator actions

Postgres is the system of record: on start the worker rebuilds positions, open orders, strategy state
and a standing kill switch from it (streaming.store.Store.load), not from a changelog (the embedded
broker's changelog recovery is unreliable, INFRA-NOTES).  At-least-once with idempotent effects; the
embedded broker does not support transactional producers.  Topics are created before the worker starts
(`tradeloop up` runs ``python -m streaming.topics``); the app never declares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from deploy import redaction
from deploy.settings import Settings, get_settings
from streaming import records as rec
from streaming.state import WorkerState
from streaming.topics import DEADLETTER
from streaming.transport import set_fetch_max_wait


def create_app(settings: Settings) -> faust.App:
    bootstrap = settings.kafka_bootstrap or f"{settings.host}:{settings.broker_port}"
    (settings.home / "stream").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.stream_app_id,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        store="memory://",
        # Faust's default is "<app id>-data" in the working directory; state belongs in the home
        datadir=str(settings.home / "stream" / f"{settings.stream_app_id}-data"),
        autodiscover=["streaming.agents", "streaming.timers", "streaming.web"],
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,  # created explicitly with one partition count (streaming/topics.py)
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
    return app


@dataclass(frozen=True)
class Outbound:
    """The topics a worker publishes to."""

    bars: faust.TopicT
    signals: faust.TopicT
    orders: faust.TopicT
    events: faust.TopicT
    fills: faust.TopicT
    positions: faust.TopicT
    alerts: faust.TopicT
    deadletter: faust.TopicT


def _topic(name: str, value_type: Any = None) -> faust.TopicT:
    name = settings.topic_prefix + name
    if value_type is None:  # consumed raw: we decode ourselves so a poisoned message can be parked
        return app.topic(name, value_type=bytes, value_serializer="raw", key_serializer="raw")
    return app.topic(name, value_type=value_type, key_type=str, key_serializer="raw")


def _settings_or_exit() -> Settings:
    """A worker started by hand (not by `tradeloop up`) with a bad setting: one line per problem, exit 2."""
    import sys

    from pydantic import ValidationError

    from deploy.settings import error_lines

    try:
        return get_settings()
    except ValidationError as exc:
        print("\n".join(error_lines(exc)), file=sys.stderr)
        raise SystemExit(2) from None


def _key_or_exit(settings: Settings):
    """Sandbox/live: the key the venue adapter trades with (deploy.secrets.check_mode); paper: None. A missing
    or unusable key is one line and exit 2, as for a bad setting."""
    import sys

    from deploy.secrets import SecretsError, check_mode

    try:
        return check_mode(settings)
    except SecretsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# `faust -A streaming.app` imports this module for `app`: the worker's configuration is read here, once
redaction.install()
settings = _settings_or_exit()
venue_key = _key_or_exit(settings)
app = create_app(settings)
ticks_topic = _topic("market.ticks")
control_topic = _topic("control")
out = Outbound(
    bars=_topic("market.bars", rec.BarRecord),
    signals=_topic("signals", rec.Signal),
    orders=_topic("orders.requests", rec.OrderRequestRecord),
    events=_topic("orders.events", rec.OrderEventRecord),
    fills=_topic("executions", rec.FillRecord),
    positions=_topic("positions", rec.PositionRecord),
    alerts=_topic("risk.alerts", rec.RiskAlert),
    deadletter=_topic(DEADLETTER, rec.DeadLetter),
)
worker = WorkerState(venue_key=venue_key)
