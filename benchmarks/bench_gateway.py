"""Gateway speed: authenticated reads on loopback, as `python -m orchestration.gateway` serves them.

Starts its own PostgreSQL (the project's stack code), migrates it, adds a viewer and --positions position rows,
starts the gateway process (uvicorn, one worker), logs in, then
  latency:    --n sequential GET /api/v1/positions?limit=10 on one keep-alive connection (p50/p99/max),
  throughput: --concurrency client processes, each one keep-alive connection, for --seconds.
Every request carries the bearer token: JWT check, per-identity rate limit, the is-active query and the read.
The load generator runs on the same cores as the gateway and PostgreSQL (2 on the reference machine), so the
throughput figure is a floor.

    .venv/bin/python benchmarks/bench_gateway.py [--n 2000] [--seconds 10] [--concurrency 32] [--path ...]
"""

from __future__ import annotations

import argparse
import os
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


def latency(url: str, path: str, headers: dict, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(min(200, n)):  # warm-up: connection, pool, caches
            client.get(path).raise_for_status()
        for _ in range(n):
            t0 = time.perf_counter()
            client.get(path).raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


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


def throughput(url: str, path: str, headers: dict, seconds: float, clients: int) -> tuple[int, int]:
    """``clients`` processes, each one keep-alive connection making requests back to back (an asyncio client
    with many connections measured itself more than the gateway)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(clients) as pool:
        results = list(pool.map(_client_loop, *zip(*[(url, path, headers, seconds)] * clients)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=4, help="client processes")
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--path", default="/api/v1/positions?limit=10")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    settings = Settings(_env_file=None, home=home, database_url=None, pg_port=free_port())
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
        log = home / "gateway.log"
        proc = subprocess.Popen([sys.executable, "-m", "orchestration.gateway"], cwd=ROOT, env=env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proc, log)
        token = httpx.post(url + "/api/v1/auth/token", data={"grant_type": "password", "username": "bench",
                                                             "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        lat = latency(url, args.path, headers, args.n)
        print(f"GET {args.path} (authenticated), {args.n} sequential on one connection: "
              f"p50 {pct(lat, 50):.2f} ms  p99 {pct(lat, 99):.2f} ms  max {max(lat) * 1000:.2f} ms  "
              f"mean {statistics.mean(lat) * 1000:.2f} ms")
        done, errors = throughput(url, args.path, headers, args.seconds, args.concurrency)
        print(f"sustained, {args.concurrency} client processes for {args.seconds:.0f} s: {done / args.seconds:,.0f} req/s"
              f" ({errors} non-200) on {os.cpu_count()} cores shared with PostgreSQL and the load generator")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        stop(record, settings.run_dir, sig=signal.SIGINT)


if __name__ == "__main__":
    main()
