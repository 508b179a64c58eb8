"""Signed control against a real worker (Faust subprocess) through the real broker and POST /control: only
envelopes signed with the control-signing key are applied, with the signer as the audit row's identity;
unsigned, forged, expired and replayed messages -- a replay also after a worker restart -- are refused, counted
and audited, and change nothing. The worker's account pages answer other hosts only with the bearer token."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import sqlalchemy as sa

from tests.streaming.conftest import (TOKEN, post_control, produce, signed_control, start_worker, wait_until)


def _refusals(engine, account: str) -> list[tuple]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT reason, identity, source, details->>'detail' FROM audit_log"
                                 " WHERE scope = :s AND action = 'control_refused' ORDER BY ts"),
                         {"s": f"account:{account}"}).all()
    return [tuple(r) for r in rows]


def _applied(engine, account: str) -> list[tuple]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT action, actor, identity, source FROM audit_log WHERE scope = :s"
                                 " AND action IN ('kill_switch', 'resume') ORDER BY ts"),
                         {"s": f"account:{account}"}).all()
    return [tuple(r) for r in rows]


def _external_address() -> str | None:
    """This machine's address on its first non-loopback interface (no packet is sent), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.255", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def _status(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_only_signed_fresh_first_seen_control_is_applied(stream_env, engine, kafka_bootstrap, tmp_path):
    # a long window, so that the replay after the restart is refused by the audit row, not by its age
    env = {**stream_env, "TRADELOOP_CONTROL_MAX_AGE_S": "300"}
    account, topic = env["TRADELOOP_ACCOUNT"], env["TRADELOOP_TOPIC_PREFIX"] + "control"
    key = account.encode()
    w = start_worker(env, tmp_path / "worker.log", web_host="0.0.0.0")
    try:
        w.wait_ready()
        state = lambda: w.get("/risk")["state"]  # noqa: E731

        # 1. signed on the topic: applied, the signer is who did it
        produce(kafka_bootstrap, topic, [(key, signed_control(env, "kill_switch", identity="user:alice",
                                                              reason="drill"))])
        wait_until(lambda: state() == "halted", 30, "the signed kill switch", w.log)
        assert _applied(engine, account) == [("kill_switch", "user:alice", "user:alice", "10.9.8.7")]

        # 2. forged (another key) and unsigned (the old self-declared format) on the topic: refused, audited
        produce(kafka_bootstrap, topic, [
            (key, signed_control(env, "resume", identity="user:admin", key=b"f" * 32)),
            (key, json.dumps({"command_id": "x", "action": "resume", "account": account, "who": "mallory"}).encode())])
        wait_until(lambda: len(_refusals(engine, account)) >= 2, 30, "two refusals", w.log)
        assert state() == "halted"

        # 3. a signed resume on the topic, then a kill switch over HTTP
        resume = signed_control(env, "resume", identity="user:bob", reason="all clear")
        produce(kafka_bootstrap, topic, [(key, resume)])
        wait_until(lambda: state() == "active", 30, "the signed resume", w.log)
        status, answer = post_control(w.url, "kill_switch", signed_control(env, "kill_switch", identity="user:carol",
                                                                            source="192.0.2.77", reason="http"))
        assert status == 200 and answer["state"] == "halted", answer

        # 4. the resume replayed, on the topic and over HTTP; an expired one over HTTP: refused, still halted
        produce(kafka_bootstrap, topic, [(key, resume)])
        wait_until(lambda: len(_refusals(engine, account)) >= 3, 30, "the topic replay refused", w.log)
        assert post_control(w.url, "resume", resume)[1]["reason"] == "replayed"
        stale = signed_control(env, "resume", identity="user:bob", now_ns=time.time_ns() - 600 * 10**9)
        status, answer = post_control(w.url, "resume", stale)
        assert (status, answer["reason"]) == (401, "expired")
        # the URL's action must be the signed one
        status, answer = post_control(w.url, "resume", signed_control(env, "kill_switch"))
        assert status == 400 and "signed body" in answer["error"]
        assert state() == "halted"
        metrics = w.text("/metrics")
        for reason, n in (("bad_signature", 1), ("unsigned", 1), ("replayed", 2), ("expired", 1)):
            assert f'tradeloop_control_refused_total{{reason="{reason}"}} {float(n)}' in metrics, reason

        # 5. the account pages: loopback freely; another host only with the token; health and metrics open
        external = _external_address()
        if external:
            base = w.url.replace("127.0.0.1", external)
            for page in ("/positions", "/orders", "/risk", "/model"):
                assert _status(base + page) == 401 and _status(base + page, "wrong") == 401, page
                assert _status(base + page, TOKEN) == 200, page
                assert _status(w.url + page) == 200, page
            for page in ("/health", "/ready", "/metrics"):
                assert _status(base + page) == 200, page
            status, answer = post_control(base, "resume", signed_control(env, "resume"))
            assert status == 401 and "bearer token" in answer["error"]
    finally:
        w.stop()

    # 6. after a restart the nonce cache is empty: the audit row of the applied resume refuses its replay
    w2 = start_worker(env, tmp_path / "worker2.log")
    try:
        w2.wait_ready()
        assert w2.get("/risk")["state"] == "halted"  # restored from the kill switch's audit row
        status, answer = post_control(w2.url, "resume", resume)
        assert (status, answer["reason"]) == (401, "replayed") and "audit_log" in answer["error"], answer
        assert w2.get("/risk")["state"] == "halted"
    finally:
        w2.stop()

    assert _applied(engine, account) == [("kill_switch", "user:alice", "user:alice", "10.9.8.7"),
                                         ("resume", "user:bob", "user:bob", "10.9.8.7"),
                                         ("kill_switch", "user:carol", "user:carol", "192.0.2.77")]
    refused = _refusals(engine, account)
    by_reason = sorted((r[0], r[1], r[2].split(":")[0]) for r in refused)
    assert by_reason == [("bad_signature", None, "topic"), ("expired", "user:bob", "http"),
                         ("replayed", "user:bob", "http"), ("replayed", "user:bob", "http"),
                         ("replayed", "user:bob", "topic"), ("unsigned", None, "topic")], refused
    assert all(r[2] == "topic:" + topic for r in refused if r[2].startswith("topic"))


def test_cli_break_glass_without_the_key_store_says_so_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from deploy.stack.process import free_port

    env = {k: v for k, v in os.environ.items() if k != "TRADELOOP_SECRETS_PASSPHRASE"}
    env.update(TRADELOOP_HOME=str(tmp_path), TRADELOOP_WORKER_PORT=str(free_port()), TRADELOOP_SECRETS_BACKEND="file")
    r = subprocess.run([sys.executable, "-c", "from orchestration.cli.control import kill_switch; kill_switch(['--break-glass'])"],
                       env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "cannot sign the control message" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
