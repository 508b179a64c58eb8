"""The worker end to end: real broker, real Postgres, real Faust worker process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import sqlalchemy as sa

from tests.streaming.conftest import consume_all, produce, produce_ticks, sim_ticks


def signed_fill_sums(engine, account: str) -> dict:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT strategy, symbol, sum(CASE WHEN side='buy' THEN quantity ELSE -quantity END)"
                                 " FROM trades WHERE account=:a GROUP BY 1, 2"), {"a": account}).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def positions(engine, account: str) -> dict:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT strategy, symbol, quantity FROM positions WHERE account=:a"),
                         {"a": account}).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def stored_fills(engine, account: str) -> list[tuple]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT fill_id, client_order_id, strategy, symbol, side, price, quantity, fee"
                                 " FROM trades WHERE account=:a ORDER BY fill_id"), {"a": account}).fetchall()
    return [tuple(r) for r in rows]


def in_process_fills(env: dict, ticks, monkeypatch) -> list[tuple]:
    """The fills of the Trader a worker with ``env`` builds (streaming.wiring.build_trader), fed ``ticks``
    in process: no broker, no Postgres, no batching."""
    from deploy.settings import Settings
    from streaming.wiring import build_trader

    for name, value in env.items():
        if name.startswith("TRADELOOP_"):
            monkeypatch.setenv(name, value)
    trader = build_trader(Settings(_env_file=None))
    fills = []
    for t in ticks:
        trader.on_tick(t)
        fills += trader.drain().fills
    return sorted((f.fill_id, f.client_order_id, f.strategy, f.symbol, f.side.value, f.price, f.quantity, f.fee)
                  for f in fills)


def test_worker_trades_stores_serves_and_obeys_the_kill_switch(worker_factory, stream_env, engine, kafka_bootstrap,
                                                              monkeypatch):
    # one partition: the worker then sees the ticks in the order they were sent, as the in-process Trader
    # below does (across partitions only each symbol's order is kept, and sizing on equity couples symbols)
    import asyncio

    from streaming.topics import ensure_topics

    stream_env.update(TRADELOOP_TOPIC_PREFIX="p1" + stream_env["TRADELOOP_TOPIC_PREFIX"], TRADELOOP_TOPIC_PARTITIONS="1")
    asyncio.run(ensure_topics(kafka_bootstrap, 1, prefix=stream_env["TRADELOOP_TOPIC_PREFIX"]))
    w = worker_factory()
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    ticks = sim_ticks(90, ex)
    produce_ticks(kafka_bootstrap, prefix, ticks)
    w.wait_ticks(len(ticks))
    time.sleep(1.5)  # the idle flush

    with engine.connect() as c:
        n_orders = c.execute(sa.text("SELECT count(*) FROM orders WHERE account=:a"), {"a": account}).scalar()
        n_open = c.execute(sa.text("SELECT count(*) FROM orders WHERE account=:a AND status IN ('new','ack')"),
                           {"a": account}).scalar()
        n_bars = c.execute(sa.text("SELECT count(*) FROM market_data WHERE source='stream' AND record_id IS NOT NULL"
                                   " AND exchange=:e"), {"e": ex}).scalar()
    assert n_orders > 0 and n_open == 0
    assert n_bars >= 3 * 80
    # positions are the sum of the fills, per (strategy, symbol)
    assert positions(engine, account) == signed_fill_sums(engine, account)

    # parity of stream and hot path: the fills the worker stored are the fills of the same Trader fed the
    # same ticks in process -- same ids, prices, quantities and fees
    stored = stored_fills(engine, account)
    assert len(stored) >= 10
    assert stored == in_process_fills(stream_env, ticks, monkeypatch)
    risk = w.get("/risk")
    assert risk["state"] == "active" and risk["counters_stream"]["ticks"] == len(ticks)
    assert w.get("/positions")["account"] == account
    metrics = w.text("/metrics")
    assert f"tradeloop_ticks_total {float(len(ticks))}" in metrics
    assert 'tradeloop_order_events_total{status="filled"}' in metrics
    assert "tradeloop_decision_seconds_bucket" in metrics

    # control: unsigned -> 401 (refused, audited); CLI kill switch (signed as cli:<user>) -> halted and audited
    import getpass
    import urllib.error
    import urllib.request
    req = urllib.request.Request(w.url + "/control/kill_switch", data=b'{"who": "me"}', method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("an unsigned control message was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401 and json.loads(exc.read())["reason"] == "unsigned"
    assert w.get("/risk")["state"] == "active"

    cli = [sys.executable, "-c", "from orchestration.cli.control import kill_switch, resume, risk; import sys;"
           " {'kill': kill_switch, 'resume': resume, 'risk': risk}[sys.argv[1]](sys.argv[2:])"]
    env = {**stream_env}
    # the gateway is not running here: the break-glass path signs with the key store (the gateway's is tested in
    # tests/gateway/test_serve.py); without it the command refuses rather than send anything unauthenticated
    r = subprocess.run(cli + ["kill"], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "--break-glass" in r.stderr and w.get("/risk")["state"] == "active", r.stderr
    r = subprocess.run(cli + ["kill", "--break-glass", "--reason", "test halt"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "halted" in r.stdout
    assert w.get("/risk")["state"] == "halted"
    r = subprocess.run(cli + ["risk", "report"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "HALTED" in r.stdout, r.stderr
    with engine.connect() as c:
        row = c.execute(sa.text("SELECT actor, reason, identity, source FROM audit_log WHERE scope=:s"
                                " AND action='kill_switch'"), {"s": f"account:{account}"}).one()
    assert tuple(row)[:3] == (f"break-glass:{getpass.getuser()}", "test halt", f"break-glass:{getpass.getuser()}")
    assert row.source.startswith("cli@")

    # while halted, new decisions are rejected by risk
    produce_ticks(kafka_bootstrap, prefix, [t for t in sim_ticks(150, ex)[len(ticks):]])
    w.wait_ticks(len(sim_ticks(150, ex)))
    assert any(k.startswith("account_halted") for k in w.get("/risk")["rejects"]), w.get("/risk")["rejects"]

    r = subprocess.run(cli + ["resume", "--break-glass"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "active" in r.stdout, r.stderr

    # a poisoned message is parked on the deadletter topic with its error; the agent goes on
    produce(kafka_bootstrap, prefix + "market.ticks", [(b"BTC/USDT", b"not json"),
                                                      (b"BTC/USDT", b'{"exchange":"sim","symbol":"BTC/USDT",'
                                                       b'"exchange_ts":1,"receive_ts":1,"price":"abc","amount":"1"}')])
    later = sim_ticks(152, ex)[len(sim_ticks(150, ex)):]
    produce_ticks(kafka_bootstrap, prefix, later)
    w.wait_ticks(len(sim_ticks(152, ex)))
    parked = [json.loads(v) for v in consume_all(kafka_bootstrap, prefix + "deadletter")]
    assert len(parked) == 2
    assert {p["value"] for p in parked} >= {"not json"}
    assert any("price" in p["error"] for p in parked)
    assert 'tradeloop_deadletters_total{topic="' + prefix + 'market.ticks"} 2.0' in w.text("/metrics")


def test_cli_says_when_the_worker_is_not_running(tmp_path):
    from deploy.stack.process import free_port

    cli = [sys.executable, "-c", "from orchestration.cli.control import risk; risk(['report'])"]
    import os
    env = {**os.environ, "TRADELOOP_WORKER_PORT": str(free_port()), "TRADELOOP_HOME": str(tmp_path)}
    r = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "worker at http://" in r.stderr and "is not reachable" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_worker_trades_exactly_the_configured_symbols(stream_env, engine, kafka_bootstrap, tmp_path):
    """TRADELOOP_SYMBOLS drives the worker: with two symbols it builds bars, trades and stores only
    those; the third symbol's ticks are counted as not traded."""
    from tests.streaming.conftest import start_worker, wait_until

    chosen = ["BTC/USDT", "SOL/USDT"]
    env = {**stream_env, "TRADELOOP_SYMBOLS": json.dumps(chosen)}
    account, prefix, ex = env["TRADELOOP_ACCOUNT"], env["TRADELOOP_TOPIC_PREFIX"], env["TRADELOOP_STREAM_EXCHANGE"]
    w = start_worker(env, tmp_path / "worker.log")
    try:
        w.wait_ready()
        ticks = sim_ticks(90, ex)
        assert {t.symbol for t in ticks} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
        traded = [t for t in ticks if t.symbol in chosen]
        produce_ticks(kafka_bootstrap, prefix, ticks)
        w.wait_ticks(len(traded))
        skipped = len(ticks) - len(traded)
        wait_until(lambda: f'tradeloop_ticks_not_traded_total{{symbol="ETH/USDT"}} {float(skipped)}'
                   in w.text("/metrics"), 30, "the skipped ticks counted", w.log)
        time.sleep(1.5)  # the idle flush
        assert w.get("/risk")["counters_stream"]["ticks"] == len(traded)
        with engine.connect() as c:
            traded_symbols = {r[0] for r in c.execute(sa.text("SELECT DISTINCT symbol FROM trades WHERE account=:a"),
                                                      {"a": account})}
            bar_symbols = {r[0] for r in c.execute(sa.text("SELECT DISTINCT symbol FROM market_data WHERE "
                                                           "source='stream' AND exchange=:e"), {"e": ex})}
        assert traded_symbols == bar_symbols == set(chosen)
        assert "ETH/USDT" in w.log.read_text()  # said once why its ticks are skipped
    finally:
        w.stop()

