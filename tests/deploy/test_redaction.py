"""No credential in a log line, an error, a traceback, an audit row or /metrics.

A known key goes through the key store; then the code paths that print, log or raise run (the keys CLI, a wrong
passphrase, a bad mode, a process that logs the credentials and dies with them in its exception) and every place
they could end up is searched for the api key and the secret."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deploy import redaction
from deploy.settings import REPO_ROOT

TRADELOOP = str(Path(sys.executable).parent / "tradeloop")
API, SECRET = "AKredact-api-key-9f8e7d6c5b4a3210", "SKredact-secret-0a1b2c3d4e5f6a7b8c9d"
PHRASE = "redaction-test-passphrase"


def _env(home: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELOOP_", "VAULT_"))}
    env.update({"TRADELOOP_HOME": str(home), "TRADELOOP_SECRETS_PASSPHRASE": PHRASE, "PYTHONPATH": str(REPO_ROOT),
                **extra})
    return env


def _run(argv: list[str], home: Path, stdin: str = "", **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=_env(home, **extra), input=stdin, capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT)


def test_scrub_masks_registered_values_and_credential_parameters():
    redaction.register(SECRET)
    assert redaction.scrub(f"x {SECRET} y") == "x **** y"
    assert redaction.scrub("GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=deadbeef01 HTTP/1.1") == \
        "GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=**** HTTP/1.1"
    assert redaction.scrub('{"apiKey": "abc123", "secret": "s3cr3t"}') == '{"apiKey": "****", "secret": "****"}'
    assert redaction.scrub("X-MBX-APIKEY: k1k2k3 CB-ACCESS-SIGN=zz Authorization: Bearer tok.en") == \
        "X-MBX-APIKEY: **** CB-ACCESS-SIGN=**** Authorization: Bearer ****"
    assert redaction.scrub("the venue answered 200 in 3 ms") == "the venue answered 200 in 3 ms"
    assert redaction.scrub_exception(RuntimeError(f"auth failed for {SECRET}\nsecond line")) == "auth failed for ****"


def test_a_handler_added_after_install_gets_redacted_records_too(tmp_path):
    redaction.install()
    redaction.register(API)
    path = tmp_path / "late.log"
    handler = logging.FileHandler(path)  # as Faust adds its own handlers after start-up
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("tradeloop.test.redaction")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("config %s", {"apiKey": API})
        try:
            raise ValueError(f"rejected key {API}")
        except ValueError:
            log.exception("order failed")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert API not in text
    assert "order failed" in text and "ValueError: rejected key ****" in text


SCRIPT = textwrap.dedent("""
    import logging, sys
    from deploy.redaction import install
    from deploy.settings import get_settings
    from deploy.secrets import SecretProvider

    settings = get_settings()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=settings.log_dir / "careless.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    install()
    key = SecretProvider.from_settings(settings).get("main")
    config = key.ccxt_config()
    logging.info("connecting with %s", config)                       # careless code logs the credentials
    logging.info("signed GET /api/v3/account?timestamp=1&signature=abcdef0123456789")
    print("stdout:", key)
    try:
        raise ConnectionError("401 for key " + config["apiKey"] + " secret " + config["secret"])
    except ConnectionError:
        logging.exception("request failed")
    raise RuntimeError("giving up with " + config["secret"])       # uncaught: the traceback goes to stderr
""")


@pytest.mark.stack
def test_no_credential_anywhere(tmp_path, engine):
    import sqlalchemy as sa

    from deploy.secrets import make_record, now
    from storage.stream import write_audit
    from streaming import metrics

    home = tmp_path / "home"
    outputs: list[str] = []

    def run(argv, **kw):
        done = _run(argv, home, **kw)
        outputs.extend([done.stdout, done.stderr])
        return done

    assert run([TRADELOOP, "keys", "add", "main", "--venue", "binance", "--stdin"],
               stdin=f"{API}\n{SECRET}\n").returncode == 0
    assert run([TRADELOOP, "keys", "list"]).returncode == 0
    assert run([TRADELOOP, "keys", "list", "--json"]).returncode == 0
    assert run([TRADELOOP, "keys", "list"], TRADELOOP_SECRETS_PASSPHRASE="a-wrong-passphrase").returncode == 2
    assert run([TRADELOOP, "keys", "add", "main", "--venue", "binance", "--stdin"],
               stdin=f"{API}\n{SECRET}\n").returncode == 2  # exists
    # bad modes: the key is for binance, not coinbase; live without the confirmation
    assert run([TRADELOOP, "up"], TRADELOOP_MODE="sandbox", TRADELOOP_VENUE="coinbase",
               TRADELOOP_VENUE_KEY="main").returncode == 2
    assert run([TRADELOOP, "status"], TRADELOOP_MODE="live", TRADELOOP_VENUE="binance",
               TRADELOOP_VENUE_KEY="main").returncode == 2
    careless = run([sys.executable, "-c", SCRIPT])
    assert careless.returncode == 1 and "RuntimeError: giving up with ****" in careless.stderr, careless.stderr
    assert "api_key=Secret('****')" in careless.stdout
    assert run([TRADELOOP, "keys", "remove", "main"]).returncode == 0

    logs = {p: p.read_text() for p in (home / "logs").rglob("*") if p.is_file()}
    assert logs, "the careless process wrote no log"
    careless_log = logs[home / "logs" / "careless.log"]
    assert "connecting with {'apiKey': '****', 'secret': '****'}" in careless_log
    assert "signature=****" in careless_log and "ConnectionError: 401 for key **** secret ****" in careless_log

    # an audit row and the worker's metrics, written with the record in hand
    record = make_record("main", "binance", API, SECRET, None, "read,trade", now(), "file")
    with engine.begin() as conn:
        write_audit(conn, "redaction-test-key-added", 1_700_000_000_000_000_000, "test", "key_add", "key:main",
                    f"key {record} added: {record!r}", record.describe())
        audit = conn.execute(sa.text("SELECT reason, details::text FROM audit_log "
                                     "WHERE event_id = 'redaction-test-key-added'")).one()
    metrics.REJECTS.labels(reason=redaction.scrub(f"venue_auth_failed apiKey={API}")).inc()
    metrics_text = metrics.render().decode()

    everything = {"cli and process output": "\n".join(outputs), **{str(p): t for p, t in logs.items()},
                  "audit_log": " ".join(audit), "/metrics": metrics_text}
    for where, text in everything.items():
        assert API not in text, f"api key found in {where}"
        assert SECRET not in text, f"secret found in {where}"
    assert "a-wrong-passphrase" not in everything["cli and process output"]
    assert PHRASE not in "\n".join(everything.values())
