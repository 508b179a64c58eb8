"""A real worker (Faust subprocess on the session's broker and PostgreSQL) follows a promoted release and a
candidate's shadow without a restart, and after being killed comes back with the promoted release, the
operator's strategy swap and limit changes, and the shadow (issue 13: "Restarting a worker keeps the
promoted release, the swapped strategies and the changed limits")."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import sqlalchemy as sa

from tests.streaming.conftest import post_control, produce_ticks, signed_control, sim_ticks, wait_until


def _post(w, action: str, body: dict) -> dict:
    status, answer = post_control(w.url, action, signed_control(w.env, action, **body))
    assert status == 200, answer
    return answer


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from orchestration.cli import main; main()", "strategy", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_worker_restart_keeps_release_swaps_limits_and_shadow(stream_env, worker_factory, kafka_bootstrap, engine):
    from storage import releases as rel

    stream_env.update(TRADELOOP_STREAM_STRATEGIES=json.dumps({"t": ["sma_cross", {"fast": 3, "slow": 8}],
                                                              "m": ["mean_reversion", {}]}),
                      TRADELOOP_RELEASE_POLL_INTERVAL_S="0.5")
    account, prefix, ex = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"], stream_env["TRADELOOP_STREAM_EXCHANGE"]
    w = worker_factory()
    slots = w.get("/risk")["slots"]
    assert slots["t"]["release"] == 1 and (slots["t"]["params"]["fast"], slots["t"]["params"]["slow"]) == (3, 8)
    ticks = sim_ticks(60, ex)
    third = len(ticks) // 3
    produce_ticks(kafka_bootstrap, prefix, ticks[:third])
    w.wait_ticks(third)

    # a tuned candidate (as the tune job registers it), promoted with the CLI: the running worker swaps to it
    with engine.begin() as conn:
        rel.create_release(conn, account, "sma_cross", {"fast": 4, "slow": 12}, {"study": "test"}, source="tune:test")
    r = _cli(stream_env, "promote", "sma_cross", "2", "--reason", "better out of sample")
    assert r.returncode == 0 and "v1 -> v2" in r.stdout, r.stderr
    pid = w.proc.pid
    wait_until(lambda: w.get("/risk")["slots"]["t"]["release"] == 2, 20, "the hot swap to release v2", w.log)
    assert w.proc.pid == pid and w.proc.poll() is None  # no restart
    assert w.get("/risk")["slots"]["t"]["params"]["fast"] == 4

    # run-time changes through the control endpoint: a strategy swap and two limit changes
    _post(w, "swap_strategy", {"reason": "calmer", "slot": "m", "strategy": "breakout",
                               "params": {"window": 30, "exit_window": 12}})
    _post(w, "set_limits", {"reason": "tighter", "params": {"account": {"max_open_orders": 7}}})
    _post(w, "set_limits", {"reason": "slower",
                            "params": {"strategy_defaults": {"max_orders_per_minute": 99}}})
    # the old release runs in shadow beside the new one
    r = _cli(stream_env, "shadow", "sma_cross", "1", "--reason", "A/B")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: (w.get("/risk")["slots"]["t"]["shadow"] or {}).get("release") == 1, 20, "the shadow", w.log)
    produce_ticks(kafka_bootstrap, prefix, ticks[third:2 * third])
    w.wait_ticks(2 * third)

    before = w.get("/risk")
    w.stop(signal.SIGKILL)  # no clean shutdown to lean on
    w2 = worker_factory()
    after = w2.get("/risk")
    assert after["slots"]["t"]["release"] == 2 and after["slots"]["t"]["params"] == before["slots"]["t"]["params"]
    assert after["slots"]["m"]["strategy"] == "breakout" and after["slots"]["m"]["params"]["window"] == 30
    assert after["slots"]["m"]["params"]["exit_window"] == 12
    assert after["limits"]["account"]["max_open_orders"] == 7
    assert after["limits"]["strategy_defaults"]["max_orders_per_minute"] == 99
    assert after["limits"] == before["limits"]
    wait_until(lambda: (w2.get("/risk")["slots"]["t"]["shadow"] or {}).get("release") == 1, 20, "the shadow back",
               w2.log)

    # the stream recorded the A/B pairs; the comparison is model shadow mode's paired test
    produce_ticks(kafka_bootstrap, prefix, ticks[2 * third:])
    w2.wait_ticks(len(ticks) - 2 * third)
    with engine.connect() as conn:
        n_shadow = conn.execute(sa.text("SELECT count(*) FROM signals WHERE account = :a AND strategy = 't' AND shadow"),
                                {"a": account}).scalar()
        orders_m = conn.execute(sa.text("SELECT count(*) FROM orders WHERE account = :a AND strategy NOT IN ('t', 'm')"),
                                {"a": account}).scalar()
    assert n_shadow > 0 and orders_m == 0  # the shadow's decisions are recorded, none of them was sent
    r = _cli(stream_env, "compare", "t", "--min-n", "5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # pairs exist only while the shadow ran, beside r2; the live rows of the slot also include r1's from before
    assert out["challenger_versions"] == ["r1"] and "r2" in out["champion_versions"] and out["n"] > 0
    r = _cli(stream_env, "status")
    st = json.loads(r.stdout)
    assert st["slots"]["t"]["release"] == 2 and st["slots"]["m"]["source"] == "operator swap"
    with engine.connect() as conn:
        actions = [a for (a,) in conn.execute(sa.text(
            "SELECT action FROM audit_log WHERE scope LIKE :s ORDER BY ts"), {"s": f"account:{account}%"})]
    assert {"release_seeded", "release_promoted", "release_shadow", "release_applied", "swap_strategy",
            "set_limits"} <= set(actions)
