"""deploy.settings: say only what is true -- no mode that does not exist, no setting that nothing reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy.settings import REPO_ROOT, Settings

TRADELOOP = str(Path(sys.executable).parent / "tradeloop")


CONFIRM = "I accept real-money trading"


def test_modes_need_a_venue_a_key_and_for_live_the_exact_confirmation():
    assert Settings(_env_file=None).mode == "paper"
    ok = Settings(_env_file=None, mode="sandbox", venue="binance", venue_key="main")
    assert (ok.mode, ok.venue, ok.venue_key) == ("sandbox", "binance", "main")
    assert Settings(_env_file=None, mode="live", venue="coinbase", venue_key="main", live_confirm=CONFIRM).mode == "live"
    for kwargs, missing in [
        (dict(mode="sandbox"), "TRADELOOP_VENUE=binance|coinbase|ib and TRADELOOP_VENUE_KEY="),
        (dict(mode="sandbox", venue="binance"), "TRADELOOP_VENUE_KEY="),
        (dict(mode="live", venue="binance", venue_key="main"), f"TRADELOOP_LIVE_CONFIRM={CONFIRM!r}"),
        (dict(mode="live", venue="binance", venue_key="main", live_confirm=CONFIRM.lower()), "the value set differs"),
    ]:
        with pytest.raises(ValidationError) as err:
            Settings(_env_file=None, **kwargs)
        assert missing in str(err.value), kwargs
    with pytest.raises(ValidationError, match="sandbox is not available for TRADELOOP_VENUE=coinbase"):
        Settings(_env_file=None, mode="sandbox", venue="coinbase", venue_key="main")
    with pytest.raises(ValidationError, match="'paper', 'sandbox' or 'live'"):
        Settings(_env_file=None, mode="yolo")


def test_venue_ib_needs_no_key_and_names_its_gateway():
    ib = Settings(_env_file=None, mode="sandbox", venue="ib")
    assert (ib.venue, ib.venue_key, ib.ib_host, ib.ib_port, ib.ib_client_id) == ("ib", None, "127.0.0.1", 7497, 1)
    live = Settings(_env_file=None, mode="live", venue="ib", live_confirm=CONFIRM, ib_port=4001, ib_client_id=7)
    assert (live.ib_port, live.ib_client_id) == (4001, 7)
    with pytest.raises(ValidationError, match=f"TRADELOOP_LIVE_CONFIRM={CONFIRM!r}"):
        Settings(_env_file=None, mode="live", venue="ib")
    with pytest.raises(ValidationError, match="needs TRADELOOP_MODE=sandbox or live"):
        Settings(_env_file=None, venue="ib")
    with pytest.raises(ValidationError, match="ib_port"):
        Settings(_env_file=None, mode="sandbox", venue="ib", ib_port=70000)


def _env(tmp_path, **extra):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
    # PYTHONPATH: the code of this checkout, whatever the venv's editable install points at
    env.update(TRADELOOP_HOME=str(tmp_path), PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def test_live_mode_without_confirmation_is_one_line_exit_2_naming_the_variable(tmp_path):
    env = _env(tmp_path, TRADELOOP_MODE="live", TRADELOOP_VENUE="binance", TRADELOOP_VENUE_KEY="main")
    result = subprocess.run([TRADELOOP, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0] == f"error: configuration: TRADELOOP_MODE=live needs TRADELOOP_LIVE_CONFIRM={CONFIRM!r}"


def test_up_refuses_a_mode_whose_key_is_missing_before_starting_anything(tmp_path):
    env = _env(tmp_path, TRADELOOP_MODE="sandbox", TRADELOOP_VENUE="binance", TRADELOOP_VENUE_KEY="main",
               TRADELOOP_SECRETS_PASSPHRASE="a-passphrase-for-tests")
    result = subprocess.run([TRADELOOP, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: TRADELOOP_MODE=sandbox: no key 'main' in {tmp_path / 'secrets.enc'}"]
    assert not (tmp_path / "run").exists()  # no service was started


def test_every_setting_is_read_somewhere():
    """A setting nothing reads only pretends to configure something (as pg_database did)."""
    sources = [p.read_text() for p in REPO_ROOT.glob("*/**/*.py")
               if p.parts[len(REPO_ROOT.parts)] not in (".venv", "tests", "benchmarks")
               and p != REPO_ROOT / "deploy" / "settings.py"]
    own = (REPO_ROOT / "deploy" / "settings.py").read_text()
    unread = [name for name in Settings.model_fields
              if not any(re.search(rf"\.{name}\b", text) for text in sources)
              and not re.search(rf"self\.{name}\b", own)]
    assert unread == []


def test_a_worker_started_by_hand_with_a_bad_setting_says_so_in_one_line():
    """`faust -A streaming.app worker` outside `tradeloop up`: the same one line as the CLI, exit 2."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    faust = Path(sys.executable).parent / "faust"
    base = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRADELOOP_VENUE": "binance", "TRADELOOP_VENUE_KEY": "main"}

    def worker(**extra) -> subprocess.CompletedProcess:
        return subprocess.run([str(faust), "-A", "streaming.app", "worker"], env={**base, **extra},
                              capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)

    done = worker(TRADELOOP_MODE="live")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: configuration: TRADELOOP_MODE=live needs TRADELOOP_LIVE_CONFIRM='I accept real-money trading'"]

    # the configuration is complete but the key store has no such key: the same one line, exit 2
    env_store = {"TRADELOOP_MODE": "sandbox", "TRADELOOP_SECRETS_BACKEND": "env"}
    done = worker(**env_store)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: TRADELOOP_MODE=sandbox: no key 'main' in the environment (TRADELOOP_KEY_MAIN_API_KEY is not set)"]
