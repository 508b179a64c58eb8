"""`tradeloop stream`: the producers behind the platform's CLI, against the real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.streaming.conftest import consume_all

TRADELOOP = str(Path(sys.executable).parent / "tradeloop")


def publish_sim(env: dict, kafka_bootstrap: str, limit: int) -> list[dict]:
    """Run `tradeloop stream --limit N sim` and return every tick it published (batches unpacked)."""
    done = subprocess.run([TRADELOOP, "stream", "--limit", str(limit), "sim", "--speed", "0"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ticks = []
    for raw in consume_all(kafka_bootstrap, env["TRADELOOP_TOPIC_PREFIX"] + "market.ticks"):
        value = orjson.loads(raw)
        ticks += value if isinstance(value, list) else [value]
    return ticks


def test_stream_sim_publishes_every_tick_keyed_by_symbol(stream_env, kafka_bootstrap):
    ticks = publish_sim(stream_env, kafka_bootstrap, 300)
    assert len(ticks) == 300
    assert {t["symbol"] for t in ticks} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    assert {t["exchange"] for t in ticks} == {stream_env["TRADELOOP_STREAM_EXCHANGE"]}


def test_stream_usage_errors_are_one_line_and_exit_2(stream_env):
    done = subprocess.run([TRADELOOP, "stream", "bogus"], env=stream_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "tradeloop stream: error: argument source: invalid choice: 'bogus'" in done.stderr and "Traceback" not in done.stderr
    helped = subprocess.run([TRADELOOP, "stream", "--help"], env=stream_env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "{sim,replay,ccxt}" in helped.stdout


def test_unreachable_servers_and_bad_times_are_one_line_not_a_traceback(stream_env):
    from deploy.stack.process import free_port

    nowhere = f"127.0.0.1:{free_port()}"
    env = {**stream_env, "DATABASE_URL": f"postgresql+psycopg://tradeloop@{nowhere}/tradeloop"}
    cases = [(["stream", "replay", "--start", "notadate"], 2, "--start must be an ISO time"),
             (["stream", "replay", "--start", "2026-11-20"], 1, "replay: cannot read market_data_clean: connection failed"),
             (["stream", "--bootstrap", nowhere, "--limit", "5", "sim"], 1, f"cannot reach the broker at {nowhere}")]
    for args, code, message in cases:
        done = subprocess.run([TRADELOOP, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == code and message in done.stderr, (args, done.returncode, done.stderr[-1500:])
        assert "Traceback" not in done.stderr


def test_the_sim_feed_publishes_the_symbols_of_the_settings(stream_env, kafka_bootstrap):
    """TRADELOOP_SYMBOLS drives the `feed` (the sim producer `tradeloop up` runs), as it drives the worker."""
    import json

    env = {**stream_env, "TRADELOOP_SYMBOLS": json.dumps(["ETH/USDT", "SOL/USDT"])}
    ticks = publish_sim(env, kafka_bootstrap, 200)
    assert len(ticks) == 200
    assert {t["symbol"] for t in ticks} == {"ETH/USDT", "SOL/USDT"}
