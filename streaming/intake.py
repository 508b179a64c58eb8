"""What comes in on ``market.ticks`` and ``control``: decoding, and parking what cannot be processed."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from streaming import metrics
from streaming import records as rec
from trading.records import Tick

log = logging.getLogger(__name__)


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


async def park(deadletter: faust.TopicT, event: Any, error: str, value: bytes | None = None) -> None:
    """Count a message that cannot be processed and park it, with the error, on the ``deadletter`` topic.
    ``value``: the part of the message that failed (one element of a tick array), instead of all of it."""
    msg = event.message
    metrics.DEADLETTERS.labels(msg.topic).inc()
    if value is None:
        value = msg.value if isinstance(msg.value, (bytes, bytearray)) else repr(msg.value).encode()
    key = msg.key if isinstance(msg.key, (bytes, bytearray)) else b""
    await deadletter.send(key=key or None, value=rec.DeadLetter(
        msg.topic, msg.partition, msg.offset, key.decode("utf-8", "replace"), value.decode("utf-8", "replace"),
        error[:2000], time.time_ns()))
    log.warning("parked %s[%d]@%d on %s: %s", msg.topic, msg.partition, msg.offset, deadletter.get_topic_name(),
                error)
