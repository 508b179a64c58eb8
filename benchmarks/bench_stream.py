"""Stream figures: the hot path in process, and (with --broker) through a real broker and worker.

    .venv/bin/python benchmarks/bench_stream.py [--minutes 600] [--runs 3] [--gc default|freeze|both]
    .venv/bin/python benchmarks/bench_stream.py --broker [--burst 30000] [--latency-ticks 12000 --rate 1000]
        [--batch-ticks 200 --batch-ms 5]

In process (no broker): ticks/s through Trader.on_tick (bars, strategy, sizing, risk, paper fills), the
same including decoding each tick from its wire form (orjson + records.from_data), and latency percentiles of
all ticks and of the ticks that closed a bar and produced an order decision (tick in -> order decided,
risk included; in the stream the market order also fills on that same tick, so that is included too).
Latency runs ``--runs`` times per GC mode: one run has only a few hundred decision ticks, so its p99 is
its third-worst sample; several runs show the spread.  ``freeze`` runs gc.collect(); gc.freeze() after a
warm-up, as a worker could after restoring its state.

With --broker (loopback only, everything started here is stopped here): a private Tansu broker and
PostgreSQL, real `faust worker` subprocesses, and
  * tick-to-fill latency: the time a tick is handed to the producer -> arrival of the fill it caused on
    the executions topic, read by a separate consumer; ticks paced at --rate so queueing does not
    dominate.  Ticks are sent as the producers send them (streaming/producers.py BatchSender: per-symbol
    micro-batches of --batch-ticks or --batch-ms), so the wait for a batch is part of the latency;
  * sustained throughput of one worker: --burst ticks published as fast as the producer batches them,
    timed until the worker's tick counter has them all, with the worker's CPU time per tick (psutil);
  * the same burst over two workers in one consumer group (topic with >= 2 partitions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from decimal import Decimal

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=int, default=600, help="sim minutes of ticks (3 symbols)")
    p.add_argument("--runs", type=int, default=3, help="latency runs per GC mode")
    p.add_argument("--gc", choices=("default", "freeze", "both"), default="both")
    p.add_argument("--broker", action="store_true", help="also measure through a real broker and worker")
    p.add_argument("--burst", type=int, default=30_000, help="ticks per throughput burst (max 50000)")
    p.add_argument("--latency-ticks", type=int, default=12_000, help="paced ticks of the latency phase")
    p.add_argument("--rate", type=float, default=1000.0, help="ticks/s of the paced latency phase")
    p.add_argument("--skip-in-process", action="store_true")
    p.add_argument("--batch-ticks", type=int, default=None, help="ticks per message (producers' default)")
    p.add_argument("--batch-ms", type=float, default=None, help="longest wait for a batch, ms (producers' default)")
    args = p.parse_args()
    if not args.skip_in_process:
        in_process(args)
    if args.broker:
        through_broker(args)


def in_process(args: argparse.Namespace) -> None:
    import gc

    from streaming.intake import decode_tick
    from streaming.producers import encode_tick
    from streaming.trader import Trader
    from streaming import config
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    start = sim.config.origin_ns
    ticks = list(sim.events(start, start + args.minutes * 60_000_000_000, kinds=("tick",)))
    wire = [encode_tick(t) for t in ticks]

    def trader() -> Trader:
        return Trader("bench", {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                      limits=RiskLimits.from_dict(config.LIMITS), instruments={i.symbol: i for i in sim.instruments()})

    tr = trader()
    t0 = time.perf_counter()
    for t in ticks:
        tr.on_tick(t)
    dt = time.perf_counter() - t0
    print(f"ticks: {len(ticks)}  orders: {tr.engine.n_orders}  fills: {len(tr.drain().fills)}")
    print(f"hot path in process: {len(ticks) / dt:,.0f} ticks/s")

    tr = trader()
    t0 = time.perf_counter()
    for raw in wire:
        tr.on_tick(decode_tick(raw))
    dt = time.perf_counter() - t0
    print(f"decode + hot path:   {len(wire) / dt:,.0f} ticks/s")

    def latency_run() -> tuple[list[int], list[int], list[int]]:
        """Per tick: whole on_tick; for decision ticks also tick in -> the order handed to the venue (risk
        passed), which is the issue's "order decision out".  In the stream the market order then fills
        on the same print, so the whole tick also carries the fill's portfolio and risk accounting."""
        tr = trader()
        lat, dec, out = [], [], []
        perf = time.perf_counter_ns
        submitted: list[int] = []
        venue_submit = tr.venue.submit

        def submit(order):
            submitted.append(perf())
            return venue_submit(order)

        tr.venue.submit = submit  # instance attribute: the engine calls self.venue.submit
        for t in ticks:
            n0 = tr.engine.n_orders + sum(tr.engine.rejected.values())
            submitted.clear()
            a = perf()
            tr.on_tick(t)
            d = perf() - a
            lat.append(d)
            if tr.engine.n_orders + sum(tr.engine.rejected.values()) != n0:
                dec.append(d)
                if submitted:
                    out.append(submitted[0] - a)
            if len(tr.out.events) > 1000:
                tr.drain()
        return lat, dec, out

    modes = ("default", "freeze") if args.gc == "both" else (args.gc,)
    print("latency in us; 'out' = tick in -> order out of risk to the venue; 'tick' = the whole decision tick"
          " (order + its fill)")
    print(f"{'gc':8s} {'run':>3s} | {'all p50':>8s} {'all p99':>8s} | {'decisions':>9s} {'out p50':>8s} "
          f"{'out p99':>8s} | {'tick p50':>8s} {'tick p90':>8s} {'tick p99':>8s} {'tick max':>8s}")
    for mode in modes:
        if mode == "freeze":
            gc.collect()
            gc.freeze()  # everything alive now (imports, ticks, warm caches) leaves the collector's scans
        p50s, p99s, o50s, o99s = [], [], [], []
        for run in range(args.runs):
            lat, dec, out = latency_run()
            a, d, o = np.asarray(lat) / 1000, np.asarray(dec) / 1000, np.asarray(out) / 1000
            p50s.append(np.percentile(d, 50))
            p99s.append(np.percentile(d, 99))
            o50s.append(np.percentile(o, 50))
            o99s.append(np.percentile(o, 99))
            print(f"{mode:8s} {run + 1:3d} | {np.percentile(a, 50):8.1f} {np.percentile(a, 99):8.1f} | {len(d):9d} "
                  f"{o50s[-1]:8.1f} {o99s[-1]:8.1f} | {p50s[-1]:8.1f} {np.percentile(d, 90):8.1f} {p99s[-1]:8.1f}"
                  f" {d.max():8.1f}")
        print(f"{mode:8s} median of runs: order out p50 {np.median(o50s):.1f} us p99 {np.median(o99s):.1f} us;"
              f" whole decision tick p50 {np.median(p50s):.1f} us p99 {np.median(p99s):.1f} us")
        if mode == "freeze":
            gc.unfreeze()
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} (1 min)")


# -- through a real broker and worker -----------------------------------------------------------------

FAST = {"t": ["sma_cross", {"fast": 3, "slow": 8}]}  # trades within minutes of sim time, as the stream tests


class _Stack:
    """A private broker + PostgreSQL + workers on loopback; ``close`` stops whatever was started."""

    def __init__(self) -> None:
        import tempfile
        from pathlib import Path

        from deploy.settings import Settings
        from deploy.stack.process import free_port

        self.home = Path(tempfile.mkdtemp(prefix="bench-stream-"))
        self.settings = Settings(_env_file=None, home=self.home, database_url=None, kafka_bootstrap=None,
                                 pg_port=free_port(), broker_port=free_port(), worker_port=free_port())
        self.records: list = []
        self.workers: list = []
        self.pg_url = ""
        self.bootstrap = ""

    def start(self) -> None:
        from storage import migrations
        from deploy.stack import broker, postgres

        s = self.settings
        self.records.append(postgres.start(s, s.pg_port))
        self.pg_url = postgres.url(s, s.pg_port)
        migrations.upgrade(self.pg_url)
        self.records.append(broker.start(s, s.broker_port))
        self.bootstrap = f"{s.host}:{s.broker_port}"

    def stream_env(self, tag: str, partitions: int) -> dict:
        """Env of one isolated stream (own topics, consumer group, account, exchange), topics created."""
        import asyncio
        import json
        from pathlib import Path

        from streaming.topics import ensure_topics

        prefix = f"b{tag}."
        asyncio.run(ensure_topics(self.bootstrap, partitions, prefix=prefix))
        repo = Path(__file__).resolve().parents[1]
        return {**os.environ, "DATABASE_URL": self.pg_url, "KAFKA_BOOTSTRAP": self.bootstrap,
                "TRADELOOP_HOME": str(self.home), "TRADELOOP_TOPIC_PREFIX": prefix,
                "TRADELOOP_STREAM_APP_ID": f"bench-{tag}", "TRADELOOP_ACCOUNT": f"bench-{tag}",
                "TRADELOOP_CONTROL_TOKEN": "bench", "TRADELOOP_STREAM_EXCHANGE": f"sim-{tag}",
                "TRADELOOP_TOPIC_PARTITIONS": str(partitions), "TRADELOOP_STREAM_STRATEGIES": json.dumps(FAST),
                "PYTHONPATH": str(repo)}

    def worker(self, env: dict, name: str) -> "_Worker":
        import subprocess
        import sys
        from pathlib import Path

        from deploy.stack.process import free_port

        port = free_port()
        env = {**env, "TRADELOOP_WORKER_PORT": str(port)}
        log = self.home / f"{name}.log"
        # -l info as deploy/stack/services.py runs it: below WARN Faust's terminal spinner is off; at warn it
        # sets the root logger to DEBUG and spins on every debug record (~10% of the worker's CPU)
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "faust"), "-A", "streaming.app", "worker", "-l", "info",
             "--web-host", "127.0.0.1", "--web-port", str(port)],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        w = _Worker(proc, f"http://127.0.0.1:{port}", log)
        self.workers.append(w)
        return w

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers.clear()

    def close(self) -> None:
        import shutil
        import signal

        from deploy.stack.process import stop

        self.stop_workers()
        for rec in reversed(self.records):  # broker first, then PostgreSQL (its fast shutdown is SIGINT)
            stop(rec, self.settings.run_dir, sig=signal.SIGINT if rec.name == "postgres" else signal.SIGTERM)
        self.records.clear()
        shutil.rmtree(self.home, ignore_errors=True)


class _Worker:
    def __init__(self, proc, url: str, log) -> None:
        self.proc, self.url, self.log = proc, url, log

    def ticks(self) -> int:
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + "/ready", timeout=5) as r:  # noqa: S310 -- loopback
            return int(json.loads(r.read())["ticks"])

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}; log {self.log}")
            try:
                import json
                import urllib.request

                with urllib.request.urlopen(self.url + "/ready", timeout=2) as r:  # noqa: S310
                    if json.loads(r.read()).get("ready"):
                        return
            except OSError:  # not listening yet, or 503 until restored
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s; log {self.log}")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:  # INFRA-NOTES: a worker may ignore SIGTERM while reconnecting
                self.proc.kill()
                self.proc.wait(10)


def _wait_total(workers: list, target: int, timeout: float) -> float:
    """Poll the workers' tick counters until their sum reaches ``target``; returns the monotonic time."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        total = 0
        for w in workers:
            try:
                total += w.ticks()
            except OSError:
                pass
        if total >= target:
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"workers consumed {total} of {target} ticks in {timeout}s")


BATCH: dict = {}  # BatchSender's max_ticks / max_ms from the command line (unset: the producers' defaults)


async def _publish(bootstrap: str, topic: str, ticks, rate: float | None = None,
                   sent_at: dict | None = None) -> float:
    """Send ticks as the producers do (per-symbol micro-batches, key = symbol); paced at ``rate`` ticks/s
    when given (in 10 ms slices), else as fast as they can be batched.  Records in ``sent_at`` the wall
    time each tick is handed to the sender, so its wait for a batch counts; returns the seconds taken."""
    from aiokafka import AIOKafkaProducer

    from streaming.producers import BatchSender

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0 if rate else 5, acks=1,
                                max_batch_size=256 * 1024)
    await producer.start()
    t0 = time.monotonic()
    try:
        async with BatchSender(producer, topic, **BATCH) as sender:
            if rate is None:
                for t in ticks:
                    await sender.add(t)
            else:
                per_slice = max(1, int(rate / 100))
                for i in range(0, len(ticks), per_slice):
                    due = t0 + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    for t in ticks[i:i + per_slice]:
                        if sent_at is not None:
                            sent_at.setdefault((t.symbol, t.exchange_ts), time.time_ns())
                        await sender.add(t)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - t0


def _cpu_s(workers: list) -> float:
    """User + system CPU seconds used so far by the workers' processes."""
    import psutil

    total = 0.0
    for w in workers:
        c = psutil.Process(w.proc.pid).cpu_times()
        total += c.user + c.system
    return total


async def _latency_phase(bootstrap: str, prefix: str, ticks, rate: float, settle_s: float = 3.0) -> list[float]:
    """Publish ``ticks`` paced while a separate consumer reads the executions topic; returns the
    tick-send -> fill-received latencies in ms, matching a fill to its tick by (symbol, ts): a market
    order fills on the print that follows its decision, stamped with that print's time."""
    import asyncio

    import orjson
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(prefix + "executions", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    sent_at: dict = {}
    lat: list[float] = []
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=5)
            now = time.time_ns()
            for msgs in batch.values():
                for m in msgs:
                    f = orjson.loads(m.value)
                    t = sent_at.get((f["symbol"], f["ts"]))
                    if t is not None:
                        lat.append((now - t) / 1e6)

    reader = asyncio.create_task(read())
    try:
        await _publish(bootstrap, prefix + "market.ticks", ticks, rate=rate, sent_at=sent_at)
        await asyncio.sleep(settle_s)  # the last fills: one flush interval and a batch window later
    finally:
        stop.set()
        await reader
        await consumer.stop()
    return lat


def through_broker(args: argparse.Namespace) -> None:
    import asyncio

    import numpy as np

    from trading.marketdata.sim import SimConfig, SimVenue

    from streaming.producers import BATCH_MS, BATCH_TICKS

    burst = min(args.burst, 50_000)  # bounded: this runs on a developer's machine
    BATCH.update(max_ticks=args.batch_ticks or BATCH_TICKS,
                 max_ms=BATCH_MS if args.batch_ms is None else args.batch_ms)
    framing = f"{BATCH['max_ticks']} ticks / {BATCH['max_ms']:g} ms per message"
    load0 = os.getloadavg()
    stack = _Stack()
    rows: list[tuple[str, str]] = []
    try:
        stack.start()

        def sim_ticks(tag: str, n: int) -> list:
            sim = SimVenue(SimConfig(seed=7, exchange=f"sim-{tag}"))
            start = sim.config.origin_ns
            out = []
            for t in sim.events(start, start + (n // 40 + 60) * 60_000_000_000, kinds=("tick",)):
                out.append(t)
                if len(out) >= n:
                    break
            return out

        # -- one worker: latency (paced), then a burst --------------------------------------------------
        partitions = max(2, stack.settings.topic_partitions)
        env = stack.stream_env("one", partitions)
        warm = 600  # strategy warm-up (8 one-minute bars) and the consumer's first fetches, not measured
        ticks = sim_ticks("one", warm + args.latency_ticks + burst)
        w = stack.worker(env, "worker-one")
        w.wait_ready()
        prefix, topic = env["TRADELOOP_TOPIC_PREFIX"], env["TRADELOOP_TOPIC_PREFIX"] + "market.ticks"
        asyncio.run(_publish(stack.bootstrap, topic, ticks[:warm]))
        _wait_total([w], warm, 120)
        lat = asyncio.run(_latency_phase(stack.bootstrap, prefix, ticks[warm:warm + args.latency_ticks], args.rate))
        done = warm + args.latency_ticks
        _wait_total([w], done, 120)
        if lat:
            a = np.asarray(lat)
            rows.append((f"tick -> fill on executions (1 worker, {args.rate:.0f} ticks/s paced, {framing}, n={len(a)})",
                         f"p50 {np.percentile(a, 50):.1f} ms  p99 {np.percentile(a, 99):.1f} ms  max {a.max():.1f} ms"))
        else:
            rows.append(("tick -> fill on executions", "no fill matched (see worker log)"))
        c0, t0 = _cpu_s([w]), time.monotonic()
        pub = asyncio.run(_publish(stack.bootstrap, topic, ticks[done:]))
        t1 = _wait_total([w], done + burst, 300)
        cpu = _cpu_s([w]) - c0
        rows.append((f"producer alone ({burst} ticks, {framing}, linger 5 ms)", f"{burst / pub:,.0f} ticks/s"))
        rows.append((f"1 worker, {burst}-tick burst, publish start -> all consumed",
                     f"{burst / (t1 - t0):,.0f} ticks/s ({t1 - t0:.1f} s; worker CPU {cpu / burst * 1e6:.0f} us/tick)"))
        stack.stop_workers()

        # -- two workers in one consumer group -------------------------------------------------------------
        env = stack.stream_env("two", partitions)
        reserve = 6000  # warm-up slices until both workers own partitions
        ticks = sim_ticks("two", warm + reserve + burst)
        ws = [stack.worker(env, "worker-two-a"), stack.worker(env, "worker-two-b")]
        for x in ws:
            x.wait_ready()
        topic = env["TRADELOOP_TOPIC_PREFIX"] + "market.ticks"
        asyncio.run(_publish(stack.bootstrap, topic, ticks[:warm]))
        _wait_total(ws, warm, 120)
        # Both must own partitions before the clock starts: the second join rebalances the group (~5 s
        # with the worker's timeouts), and the first worker may have taken the whole warm-up alone.
        sent, deadline = warm, time.monotonic() + 60
        while min(x.ticks() for x in ws) == 0:
            if time.monotonic() > deadline or sent + 200 > warm + reserve:
                raise RuntimeError("the second worker got no partition; logs in " + str(stack.home))
            asyncio.run(_publish(stack.bootstrap, topic, ticks[sent:sent + 200]))
            sent += 200
            _wait_total(ws, sent, 60)
            time.sleep(0.5)
        split0 = [x.ticks() for x in ws]
        c0, t0 = _cpu_s(ws), time.monotonic()
        asyncio.run(_publish(stack.bootstrap, topic, ticks[sent:sent + burst]))
        t1 = _wait_total(ws, sent + burst, 300)
        cpu = _cpu_s(ws) - c0
        split = [x.ticks() - s0 for x, s0 in zip(ws, split0)]
        rows.append((f"2 workers, one group, {partitions} partitions, {burst}-tick burst",
                     f"{burst / (t1 - t0):,.0f} ticks/s ({t1 - t0:.1f} s; split {split[0]} / {split[1]};"
                     f" workers' CPU {cpu / burst * 1e6:.0f} us/tick)"))
    except BaseException:
        for w in stack.workers:  # the logs go with the temporary home: show their ends first
            print(f"--- {w.log.name} (tail)\n{w.log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        stack.close()
    load1 = os.getloadavg()
    width = max(len(r[0]) for r in rows) if rows else 20
    print()
    print("through the broker (loopback, Tansu memory storage, PostgreSQL store, faust workers)")
    for name, value in rows:
        print(f"  {name:<{width}s}  {value}")
    print(f"machine: {os.cpu_count()} cpus, load average {load0[0]:.2f} before, {load1[0]:.2f} after (1 min)")


if __name__ == "__main__":
    main()
