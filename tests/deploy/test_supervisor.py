"""The supervisor restarts a service that dies (real processes, real signals), with backoff and a budget,
and `down` stops everything for good."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from deploy.stack import services, stack, supervisor
from deploy.stack.process import ServiceRecord
from deploy.stack.supervisor import RestartPolicy
from tests.conftest import make_settings
from tests.streaming.conftest import wait_until


def test_backoff_doubles_inside_the_window_and_the_budget_stops_a_crash_loop():
    policy = RestartPolicy(backoff_s=1.0, backoff_max_s=5.0, budget=3, window_s=100.0)
    assert policy.delay([], now=1000.0) == 1.0
    assert policy.delay([990.0], now=1000.0) == 2.0
    assert policy.delay([980.0, 990.0], now=1000.0) == 4.0
    assert policy.delay([970.0, 980.0, 990.0], now=1000.0) is None  # budget spent
    # restarts that left the window no longer count
    assert policy.delay([850.0, 880.0, 990.0], now=1000.0) == 2.0
    assert RestartPolicy(backoff_s=1.0, backoff_max_s=5.0, budget=10).delay([999.0] * 6, now=1000.0) == 5.0
    assert RestartPolicy(budget=0).delay([], now=0.0) is None  # 0: never restart


def _log(settings):
    return settings.log_dir / "supervisor.log"


def _row(settings, name):
    return next(r for r in stack.status(settings) if r.name == name)


def _metric(settings, line_start: str) -> float | None:
    with urllib.request.urlopen(f"http://{settings.host}:{settings.supervisor_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
    return None


@pytest.fixture
def settings(tmp_path):
    s = make_settings(tmp_path / "home", restart_backoff_s=0.2, restart_backoff_max_s=1.0, restart_budget=2,
                      restart_window_s=120.0, supervise_interval_s=0.2)
    yield s
    stack.down(s, echo=lambda _: None)


def test_a_killed_service_comes_back_is_counted_and_a_crash_loop_is_given_up(settings):
    docs = services.start_docs(settings)
    supervisor.start(settings)
    assert _row(settings, "supervisor").state == "running"

    for restart in (1, 2):
        before = ServiceRecord.load(settings.run_dir, "docs").pid
        os.kill(before, signal.SIGKILL)
        # status is written after each pass: wait for the pass that counted the restart
        row = wait_until(lambda: (r := _row(settings, "docs")).restarts == restart and r, 30,
                         f"docs restart {restart}", _log(settings))
        assert row.state == "running" and row.pid != before
        assert _metric(settings, 'tradeloop_service_restarts_total{service="docs"}') == restart
        assert _metric(settings, 'tradeloop_service_up{service="docs"}') == 1.0

    # a third death inside the window: the budget (2) is spent, the service stays down and says so
    os.kill(ServiceRecord.load(settings.run_dir, "docs").pid, signal.SIGKILL)
    wait_until(lambda: _row(settings, "docs").state == "failed", 30, "docs to be given up", _log(settings))
    assert _metric(settings, 'tradeloop_service_restart_budget_spent{service="docs"}') == 1.0
    time.sleep(1.5)  # longer than the largest backoff: still not restarted
    assert _row(settings, "docs").state == "failed"
    log = (settings.log_dir / "supervisor.log").read_text()
    assert "docs: restarted" in log and "restart budget spent" in log

    # `tradeloop up`'s way of starting it again: the supervisor watches it afresh
    services.start_docs(settings)
    wait_until(lambda: _metric(settings, 'tradeloop_service_restart_budget_spent{service="docs"}') == 0.0, 10,
               "budget flag cleared", _log(settings))
    assert docs.pid != ServiceRecord.load(settings.run_dir, "docs").pid


def test_down_stops_everything_for_good(settings):
    services.start_docs(settings)
    supervisor.start(settings)
    docs_pid = ServiceRecord.load(settings.run_dir, "docs").pid
    stopped = stack.down(settings, echo=lambda _: None)
    assert stopped[0] == "supervisor" and "docs" in stopped
    time.sleep(1.0)  # several supervision intervals: nothing comes back
    assert {r.state for r in stack.status(settings) if r.name in ("docs", "supervisor")} == {"stopped"}
    with pytest.raises(ProcessLookupError):
        os.kill(docs_pid, 0)
