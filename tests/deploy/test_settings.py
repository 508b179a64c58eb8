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


def test_live_mode_is_refused_until_the_live_path_exists():
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None, mode="live")
    assert "issues 11 and 14" in str(err.value)
    assert Settings(_env_file=None).mode == "paper"


def test_live_mode_is_one_line_exit_2_naming_the_variable(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
    env.update(TRADELOOP_HOME=str(tmp_path), TRADELOOP_MODE="live")
    result = subprocess.run([TRADELOOP, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "TRADELOOP_MODE" in lines[0] and "live trading is not available yet" in lines[0]
    assert "issues 11 and 14" in lines[0]


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

    env = {**os.environ, "TRADELOOP_MODE": "live"}
    faust = Path(sys.executable).parent / "faust"
    done = subprocess.run([str(faust), "-A", "streaming.app", "worker"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [l for l in done.stderr.strip().splitlines() if "TRADELOOP_MODE" in l]
    assert "live trading is not available yet" in done.stderr and "Traceback" not in done.stderr
