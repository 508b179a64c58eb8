"""Gateway speed: authenticated reads on loopback, as `python -m orchestration.gateway` serves them.

Starts its own PostgreSQL (the project's stack code), migrates it, adds a viewer and --positions position rows,
starts the gateway (--workers server processes; default: the gateway's own, one per core), logs in, then, --repeat
times:
  latency:    sequential GET /api/v1/positions?limit=10 on one keep-alive connection (p50/p99/max),
  throughput: --concurrency keep-alive connections for --seconds.
Every request carries the bearer token: JWT check, per-identity rate limit, the identity check and the read.

The load generator is wrk (C, one thread) when it is on PATH (`apt-get install wrk`), else Python httpx client
processes -- which cost more CPU per request than the gateway and share its cores, so their throughput figure is
a floor. Which one ran is printed, with the machine's load average before and after each measurement.

    .venv/bin/python benchmarks/bench_gateway.py [--seconds 10] [--concurrency 32] [--repeat 3] [--workers N]
        [--generator auto|wrk|python] [--path ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.settings import Settings  # noqa: E402
from deploy.stack import postgres  # noqa: E402
from deploy.stack.process import free_port, stop  # noqa: E402
from storage import migrations  # noqa: E402

PASSWORD = "benchmark password 0123"


def wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("gateway did not start in 60 s")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# ---- Python generator (fallback) ----------------------------------------------------------------------------
def py_latency(url: str, path: str, headers: dict, seconds: float) -> dict:
    out = []
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(200):  # warm-up: connection, pool, caches
            client.get(path).raise_for_status()
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            client.get(path).raise_for_status()
            out.append(time.perf_counter() - t0)
    return {"n": len(out), "p50": pct(out, 50), "p99": pct(out, 99), "max": max(out) * 1000,
            "rps": len(out) / seconds, "errors": 0}


def _client_loop(url: str, path: str, headers: dict, seconds: float) -> tuple[int, int]:
    done = errors = 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        client.get(path)
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            if client.get(path).status_code == 200:
                done += 1
            else:
                errors += 1
    return done, errors


def py_throughput(url: str, path: str, headers: dict, seconds: float, clients: int) -> dict:
    """``clients`` processes, each one keep-alive connection making requests back to back (an asyncio client
    with many connections measured itself more than the gateway)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(clients) as pool:
        results = list(pool.map(_client_loop, *zip(*[(url, path, headers, seconds)] * clients)))
    done, errors = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"n": done, "rps": done / seconds, "errors": errors}


# ---- wrk ------------------------------------------------------------------------------------------------------
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def wrk(url: str, path: str, headers: dict, seconds: float, connections: int) -> dict:
    """One wrk run: one thread, ``connections`` keep-alive connections, each sending its next request when the
    previous answer arrived."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url + path], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    lat = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    total = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)$", out, re.M)
    mx = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)
    return {"n": total, "p50": lat.get("50"), "p99": lat.get("99"), "max": _ms(mx.group(1)) if mx else None,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "errors": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants, live (the gateway's server processes, PostgreSQL's
    backends) or exited and reaped (a backend whose connection closed)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        reaped = root.cpu_times()
        total += reaped.children_user + reaped.children_system
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """median (min-max) of the repeats."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0, help="each latency and each throughput run")
    ap.add_argument("--concurrency", type=int, default=32, help="connections (Python generator: processes, "
                                                                  "default 4)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="gateway server processes (0: the gateway's default)")
    ap.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--path", default="/api/v1/positions?limit=10")
    args = ap.parse_args()
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: wrk is not on PATH (apt-get install wrk), or use --generator python")
    home = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    # the key file holds the database roles' passwords and the gateway's JWT key; both processes open it
    os.environ["TRADELOOP_SECRETS_PASSPHRASE"] = "bench passphrase"
    settings = Settings(_env_file=None, home=home, database_url=None, pg_port=free_port(), secrets_backend="file")
    record = postgres.start(settings, settings.pg_port)
    proc = None
    try:
        url_db = postgres.url(settings, settings.pg_port)
        migrations.upgrade(url_db)
        engine = sa.create_engine(url_db)
        from orchestration.gateway import users

        users.add_user(engine, "bench", PASSWORD, "viewer")
        with engine.begin() as conn:
            conn.execute(sa.text("""
                INSERT INTO positions (account, strategy, symbol, quantity, avg_price, updated_at)
                SELECT 'paper', 's' || i, 'BTC/USDT', i, 100, now() FROM generate_series(1, :n) AS i"""),
                {"n": args.positions})
        engine.dispose()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
        env.update(TRADELOOP_HOME=str(home), DATABASE_URL=url_db, TRADELOOP_GATEWAY_PORT=str(port),
                   TRADELOOP_GATEWAY_RATE_PER_MIN="100000000", TRADELOOP_SECRETS_BACKEND="file",
                   TRADELOOP_SECRETS_PASSPHRASE="bench passphrase", PYTHONPATH=str(ROOT))
        if args.workers:
            env["TRADELOOP_GATEWAY_WORKERS"] = str(args.workers)
        log = home / "gateway.log"
        proc = subprocess.Popen([sys.executable, "-m", "orchestration.gateway"], cwd=ROOT, env=env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proc, log)
        time.sleep(2)  # every server process up, not just the first
        token = httpx.post(url + "/api/v1/auth/token", data={"grant_type": "password", "username": "bench",
                                                             "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        workers = re.search(r"gateway: (\d+) server process", log.read_text())
        conc = args.concurrency if generator == "wrk" else min(args.concurrency, 4)
        print(f"generator: {generator}; gateway server processes: {workers.group(1) if workers else '?'}; "
              f"{os.cpu_count()} CPUs shared by the gateway, PostgreSQL and the generator; GET {args.path}, "
              f"authenticated")
        lat_runs, thr_runs = [], []
        for i in range(args.repeat):
            before = loadavg()
            lat = wrk(url, args.path, headers, args.seconds, 1) if generator == "wrk" else \
                py_latency(url, args.path, headers, args.seconds)
            mid = loadavg()
            gw0, pg0 = cpu_seconds(proc.pid), cpu_seconds(record.pid)
            thr = wrk(url, args.path, headers, args.seconds, conc) if generator == "wrk" else \
                py_throughput(url, args.path, headers, args.seconds, conc)
            after = loadavg()
            thr["gw_ms"] = (cpu_seconds(proc.pid) - gw0) * 1000 / max(1, thr["n"] + thr["errors"])
            thr["pg_ms"] = (cpu_seconds(record.pid) - pg0) * 1000 / max(1, thr["n"] + thr["errors"])
            lat_runs.append(lat)
            thr_runs.append(thr)
            print(f"run {i + 1}: sequential (1 connection): p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
                  f"max {lat['max']:.2f} ms  ({lat['rps']:,.0f} req/s)  [load {before} -> {mid}]")
            print(f"run {i + 1}: {conc} {'connections' if generator == 'wrk' else 'client processes'}: "
                  f"{thr['rps']:,.0f} req/s" + (f"  p50 {thr['p50']:.2f} ms  p99 {thr['p99']:.2f} ms"
                                               if thr.get('p50') is not None else "")
                  + f"  CPU per request: gateway {thr['gw_ms']:.2f} ms, PostgreSQL {thr['pg_ms']:.2f} ms"
                  + f"  ({thr['errors']} non-200{', socket errors ' + thr['socket_errors'] if thr.get('socket_errors') else ''})"
                  f"  [load {mid} -> {after}]")
        print(f"summary over {args.repeat} runs, median (min-max): sequential p50 "
              f"{spread([r['p50'] for r in lat_runs])} ms, p99 {spread([r['p99'] for r in lat_runs])} ms; "
              f"throughput {spread([r['rps'] for r in thr_runs], '{:,.0f}')} req/s; CPU per request: gateway "
              f"{spread([r['gw_ms'] for r in thr_runs])} ms, PostgreSQL {spread([r['pg_ms'] for r in thr_runs])} ms")
        failed = sum(r["errors"] for r in lat_runs + thr_runs)
        if failed:
            raise SystemExit(f"error: {failed} answers were not 200 (see {log})")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)  # the supervisor and its server processes
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        stop(record, settings.run_dir, sig=signal.SIGINT)


if __name__ == "__main__":
    main()
