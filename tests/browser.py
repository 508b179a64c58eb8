"""A real headless Chromium for browser checks, driven by Playwright.

Use it from a test module with `from tests.browser import browser, artefacts_dir  # noqa: F401` and a
`browser` argument. Chromium comes from the OS, not from Playwright's download (which needs the network
at test time): when it is missing and we run as root on Debian, it is installed with apt-get; otherwise
the test is skipped with a line saying why. Under CI (`CI` set) a missing browser fails instead, so a
browser check can never silently stop running there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
# screenshots and other files a person looks at after a run (git-ignored)
ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"browser check cannot run under CI: {reason}")
    pytest.skip(reason)


def ensure_chromium() -> str:
    """Path of the OS Chromium, installing it (root on Debian) when missing; skip (fail in CI) if we cannot."""
    from tests.os_packages import installing

    if Path(CHROMIUM).exists():
        return CHROMIUM
    with installing():
        return _install_chromium()


def _install_chromium() -> str:
    if Path(CHROMIUM).exists():  # another test worker installed it while this one waited
        return CHROMIUM
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        _unavailable(f"no Chromium at {CHROMIUM} and this is not Debian (install the `chromium` package)")
    if os.geteuid() != 0:
        _unavailable(f"no Chromium at {CHROMIUM}; install it as root: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            _unavailable(f"`{' '.join(argv)}` failed: {tail[0]}")
    if not Path(CHROMIUM).exists():
        _unavailable(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


# Module scope, not session: while Playwright's sync API runs it holds an event loop in the main thread,
# so every later asyncio.run() in the session (broker, worker tests) would fail
@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Playwright Browser), shared by the session's browser checks."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (it is in the `test` extra: requirements.lock)")
    executable = ensure_chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def artefacts_dir(request) -> Path:
    """test-artifacts/<test name>/, emptied first: what the last run of this test left to look at."""
    target = ARTEFACTS / request.node.name.replace("/", "_")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    return target
