"""Helpers of the stream tests: a real Faust worker subprocess on the session's Postgres and broker,
with its own topic prefix, consumer group and account so tests never see each other's data."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-control-token"
PASSPHRASE = "test-secrets-passphrase"  # of the worker's key file (<home>/secrets.enc): the control-signing key
FAST = {"t": ["sma_cross", {"fast": 3, "slow": 8}]}  # trades within minutes of sim time


def sim_ticks(minutes: int, exchange: str = "sim", seed: int = 7):
    from trading.marketdata.sim import SimConfig, SimVenue

    sim = SimVenue(SimConfig(seed=seed, exchange=exchange))
    start = sim.config.origin_ns
    return list(sim.events(start, start + minutes * 60_000_000_000, kinds=("tick",)))


def produce(bootstrap: str, topic: str, payloads: list[tuple[bytes | None, bytes]]) -> None:
    async def run() -> None:
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await p.start()
        try:
            for key, value in payloads:
                await p.send(topic, value, key=key)
        finally:
            await p.stop()

    asyncio.run(run())


def produce_ticks(bootstrap: str, prefix: str, ticks) -> None:
    from streaming.producers import encode_tick

    produce(bootstrap, prefix + "market.ticks", [(t.symbol.encode(), encode_tick(t)) for t in ticks])


def consume_all(bootstrap: str, topic: str, timeout_s: float = 5.0) -> list[bytes]:
    async def run() -> list[bytes]:
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False)
        await c.start()
        out: list[bytes] = []
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=300)
                for msgs in batch.values():
                    out += [m.value for m in msgs]
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


_KEYS: dict[str, tuple[str, bytes]] = {}


def control_key(env: dict) -> tuple[str, bytes]:
    """(kid, key) of the stream's control-signing key, from its home's key file (generated on first use), as
    the CLI and the gateway get it: deploy.secrets.control_signing_key."""
    from deploy.secrets import FileBackend, SecretProvider, control_signing_key

    home = env["TRADELOOP_HOME"]
    if home not in _KEYS:
        provider = SecretProvider(FileBackend(Path(home) / "secrets.enc",
                                              passphrase=lambda new: env["TRADELOOP_SECRETS_PASSPHRASE"]))
        _KEYS[home] = control_signing_key(None, True, provider)  # settings unused: the provider is given
    return _KEYS[home]


def signed_control(env: dict, action: str, *, identity: str = "user:tester", source: str = "10.9.8.7",
                   key: bytes | None = None, now_ns: int | None = None, **body) -> bytes:
    """A control message for the stream's account, signed (streaming/signing.py) with its key -- or ``key``
    (a forgery) -- ready to produce to the control topic or POST to /control/{action}."""
    from streaming.signing import encode, sign

    kid, real = control_key(env)
    return encode(sign({"action": action, "account": env["TRADELOOP_ACCOUNT"], **body}, key or real, kid=kid,
                       identity=identity, source=source, now_ns=now_ns))


def post_control(url: str, action: str, data: bytes, token: str | None = None) -> tuple[int, dict]:
    """POST /control/{action}: (status, JSON answer), errors included."""
    import urllib.error

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(f"{url}/control/{action}", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@dataclass
class Worker:
    proc: subprocess.Popen
    url: str
    env: dict
    log: Path

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return r.read().decode()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if self.get("/ready").get("ready"):
                    return
            except Exception:  # noqa: BLE001 -- not listening yet
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log.read_text()[-4000:]}")

    def wait_ticks(self, n: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            last = self.get("/risk")["counters_stream"]
            if sum(last.values()) >= n:
                return last
            time.sleep(0.3)
        raise AssertionError(f"worker saw {last} of {n} ticks:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def stream_env(pg_url, kafka_bootstrap, stack_settings, tmp_path):
    """Env of an isolated stream: own topics (created here), consumer group and account."""
    from deploy.stack.process import free_port
    from streaming.topics import ensure_topics

    tag = uuid.uuid4().hex[:8]
    prefix = f"t{tag}."
    asyncio.run(ensure_topics(kafka_bootstrap, stack_settings.topic_partitions, prefix=prefix))
    env = {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "TRADELOOP_HOME": str(tmp_path), "TRADELOOP_TOPIC_PREFIX": prefix,
           "TRADELOOP_STREAM_APP_ID": f"stream-{tag}", "TRADELOOP_ACCOUNT": f"acct-{tag}",
           "TRADELOOP_CONTROL_TOKEN": TOKEN, "TRADELOOP_SECRETS_BACKEND": "file",
           "TRADELOOP_SECRETS_PASSPHRASE": PASSPHRASE, "TRADELOOP_STREAM_EXCHANGE": f"sim-{tag}", "TRADELOOP_WORKER_PORT": str(free_port()),
           "TRADELOOP_TOPIC_PARTITIONS": str(stack_settings.topic_partitions),
           "TRADELOOP_STREAM_STRATEGIES": json.dumps(FAST), "PYTHONPATH": str(REPO)}
    control_key(env)  # as `up` does before starting the worker: the control-signing key exists from the start
    return env


def start_worker(env: dict, log: Path, web_host: str = "127.0.0.1") -> Worker:
    port = env["TRADELOOP_WORKER_PORT"]
    fh = open(log, "ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "faust"), "-A", "streaming.app", "worker", "-l", "info",
         "--web-host", web_host, "--web-port", port],
        cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return Worker(proc, f"http://127.0.0.1:{port}", env, log)


@pytest.fixture
def worker_factory(stream_env, tmp_path):
    workers: list[Worker] = []

    def make() -> Worker:
        w = start_worker(stream_env, tmp_path / "worker.log")
        workers.append(w)
        w.wait_ready()
        return w

    yield make
    for w in workers:
        w.stop()


def wait_until(cond, timeout: float, what: str, log: Path):
    """cond()'s first truthy value within ``timeout`` s; otherwise fail with the worker log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
