"""The stream's topics: every declared topic is used, and `up` creates them with the topic prefix."""

from __future__ import annotations

import asyncio
import uuid

from streaming.topics import TOPICS


async def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        present = [n for n in names if n in set(await admin.list_topics())]
        if not present:  # describe_topics([]) describes every topic
            return {}
        described = await admin.describe_topics(present)
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


def test_up_creates_the_prefixed_topics(kafka_bootstrap, stack_settings):
    """`tradeloop up` with TRADELOOP_TOPIC_PREFIX: the topics the worker subscribes to, not unprefixed ones."""
    from deploy.stack.stack import _topics

    prefix = f"up{uuid.uuid4().hex[:6]}."
    settings = stack_settings.model_copy(update={"topic_prefix": prefix, "topic_partitions": 2})
    names = [prefix + name for name in TOPICS]
    assert asyncio.run(_partitions(kafka_bootstrap, names)) == {}
    _topics(kafka_bootstrap, settings)
    assert asyncio.run(_partitions(kafka_bootstrap, names)) == {name: 2 for name in names}
    _topics(kafka_bootstrap, settings)  # idempotent: a second `up` finds them all


def test_an_unreachable_broker_is_one_line(stack_settings):
    import pytest

    from deploy.stack.process import StackError, free_port
    from deploy.stack.stack import _topics

    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(StackError) as err:
        _topics(nowhere, stack_settings)
    assert str(err.value).startswith(f"broker: could not create topics on {nowhere}: ")
    assert "\n" not in str(err.value)


def test_the_stack_needs_no_streaming_code():
    import ast
    from pathlib import Path

    import deploy.stack as stack

    for path in Path(stack.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("streaming"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("streaming") for a in node.names), path.name


def test_every_topic_is_one_the_worker_uses():
    """No topic is declared for nothing: each is consumed or published by the worker's app."""
    from streaming import app

    used = {t.get_topic_name() for t in (app.ticks_topic, app.control_topic, *vars(app.out).values())}
    assert used == {app.settings.topic_prefix + name for name in TOPICS}
