"""Keeps the embedded stack running: a service that dies is started again, with backoff and a budget.

`tradeloop up` starts this process last; `tradeloop down` stops it first, so `down` stops everything for
good. A service counts as crashed when its pid record is still there (``down`` removes it) but its
process is gone. Each restart goes through the same start function as `up` (health check included);
a worker started again rebuilds its state from PostgreSQL as on any start.

The restart budget stops a crash loop from hammering the machine: after `restart_budget` restarts of one
service within `restart_window_s` the supervisor gives up on it, says so in its log, in
`<home>/run/supervisor-state.json` (read by `tradeloop status`) and in its /metrics, and leaves it
stopped until a person runs `tradeloop up`.

We supervise with our own loop rather than supervisord or circus because the services already have
start functions with health checks and dependency order (deploy/stack/stack.py); a second definition of
each command line and environment in another tool's config would drift from them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.settings import Settings

log = logging.getLogger("tradeloop.supervisor")

STATE_FILE = "supervisor-state.json"


@dataclass
class RestartPolicy:
    backoff_s: float = 1.0  # first wait after a death; doubles with each restart inside the window
    backoff_max_s: float = 60.0
    budget: int = 5  # restarts allowed inside the window before giving up
    window_s: float = 600.0

    def delay(self, recent: list[float], now: float) -> float | None:
        """Seconds to wait before the next restart, or None once the budget of the window is spent."""
        in_window = [t for t in recent if now - t < self.window_s]
        if len(in_window) >= self.budget:
            return None
        return min(self.backoff_s * (2 ** len(in_window)), self.backoff_max_s)


@dataclass
class ServiceHealth:
    restarts: int = 0  # restarts done by the supervisor since it started (successful ones)
    failed_starts: int = 0
    recent: list[float] = field(default_factory=list)  # times of restart attempts inside the window
    died_at: float | None = None
    next_attempt_at: float | None = None
    gave_up: bool = False
    last_error: str = ""


def read_state(run_dir: Path) -> dict[str, dict]:
    """What the supervisor last wrote: {service: ServiceHealth as a dict}; {} when it never ran."""
    try:
        return json.loads((run_dir / STATE_FILE).read_text()).get("services", {})
    except (FileNotFoundError, ValueError):
        return {}


class Supervisor:
    def __init__(self, settings: Settings, policy: RestartPolicy, starters: dict, order: tuple[str, ...]):
        self.settings = settings
        self.policy = policy
        self.starters = starters  # {service: () -> ServiceRecord}, the same functions `up` calls
        self.order = order
        self.health: dict[str, ServiceHealth] = {name: ServiceHealth() for name in order}
        self.metrics = _Metrics()

    def tick(self, now: float | None = None) -> None:
        """One pass over the services, in start order (a database comes back before its clients)."""
        from deploy.stack.process import ServiceRecord

        _reap_children()
        fixed_now = now
        for name in self.order:
            now = time.time() if fixed_now is None else fixed_now  # a restart can take a while
            record = ServiceRecord.load(self.settings.run_dir, name)
            health = self.health[name]
            if record is None:  # never started, or stopped by `down`
                health.next_attempt_at = None
                self.metrics.up(name, False)
                continue
            if record.process() is not None:
                if health.gave_up:  # a person started it again (`tradeloop up`): watch it afresh
                    self.health[name] = health = ServiceHealth(restarts=health.restarts)
                health.died_at = health.next_attempt_at = None
                self.metrics.up(name, True)
                continue
            self.metrics.up(name, False)
            if health.gave_up:
                continue
            if health.next_attempt_at is None:
                health.died_at = health.died_at or now
                wait = self.policy.delay(health.recent, now)
                if wait is None:
                    health.gave_up = True
                    self.metrics.gave_up(name)
                    log.error("%s: died again; restart budget spent (%d restarts in %.0f s): left stopped, "
                              "run `tradeloop up` after fixing it; see %s", name, self.policy.budget,
                              self.policy.window_s, record.log)
                    continue
                health.next_attempt_at = now + wait
                log.warning("%s: process %d is gone; restarting in %.1f s", name, record.pid, wait)
            if now >= health.next_attempt_at:
                self._restart(name, health, now)
        self._save()

    def _restart(self, name: str, health: ServiceHealth, now: float) -> None:
        from deploy.stack.process import ServiceRecord, StackError, stop

        health.recent = [t for t in health.recent if now - t < self.policy.window_s] + [now]
        health.next_attempt_at = None
        try:
            record = self.starters[name]()
        except StackError as exc:
            health.failed_starts += 1
            health.last_error = str(exc)
            log.error("%s: restart failed: %s", name, exc)
            # a start that timed out may have left an unhealthy process behind: stop it, keep the record
            # (the record is what marks the service as wanted)
            leftover = ServiceRecord.load(self.settings.run_dir, name)
            if leftover is not None and leftover.process() is not None:
                stop(leftover, self.settings.run_dir)
                leftover.save(self.settings.run_dir)
            return
        health.restarts += 1
        health.died_at = None
        health.last_error = ""
        self.metrics.restarted(name)
        log.warning("%s: restarted (pid %d), restart %d", name, record.pid, health.restarts)

    def _save(self) -> None:
        run_dir = self.settings.run_dir
        tmp = run_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "at": time.time(),
                                   "services": {n: asdict(h) for n, h in self.health.items()}}))
        tmp.replace(run_dir / STATE_FILE)


class _Metrics:
    """Prometheus series of the supervisor (its own registry, served on its port)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self._restarts = Counter("tradeloop_service_restarts", "Restarts of a dead service by the supervisor",
                                 ["service"], registry=self.registry)
        self._up = Gauge("tradeloop_service_up", "1 while the service's process is alive", ["service"],
                         registry=self.registry)
        self._gave_up = Gauge("tradeloop_service_restart_budget_spent",
                              "1 once the supervisor has given up restarting the service", ["service"],
                              registry=self.registry)

    def restarted(self, name: str) -> None:
        self._restarts.labels(name).inc()
        self.up(name, True)

    def up(self, name: str, alive: bool) -> None:
        self._up.labels(name).set(1 if alive else 0)
        if alive:
            self._gave_up.labels(name).set(0)

    def gave_up(self, name: str) -> None:
        self._gave_up.labels(name).set(1)


def _reap_children() -> None:
    """Services this process restarted are its children: collect their exit status, leave no zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def start(settings: Settings):
    """Start the supervisor process with these settings (passed as its environment) and wait for /metrics."""
    import sys

    from deploy.settings import REPO_ROOT
    from deploy.stack.process import http_ok, spawn, wait_healthy

    url = f"http://{settings.host}:{settings.supervisor_port}"
    record = spawn("supervisor", [sys.executable, "-m", "deploy.stack.supervisor"], port=settings.supervisor_port,
                   url=url, log_dir=settings.log_dir, run_dir=settings.run_dir, env=settings.as_env(),
                   cwd=REPO_ROOT)
    wait_healthy(record, lambda: http_ok(f"{url}/metrics"), settings.start_timeout_s)
    return record


def policy_from(settings: Settings) -> RestartPolicy:
    return RestartPolicy(backoff_s=settings.restart_backoff_s, backoff_max_s=settings.restart_backoff_max_s,
                         budget=settings.restart_budget, window_s=settings.restart_window_s)


def main() -> None:
    from prometheus_client import start_http_server

    from deploy.settings import get_settings
    from deploy.stack.stack import ORDER, starters

    from deploy.redaction import install

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    install()
    settings = get_settings()
    supervised = tuple(name for name in ORDER if name != "supervisor")
    supervisor = Supervisor(settings, policy_from(settings), starters(settings), supervised)
    start_http_server(settings.supervisor_port, addr=settings.host, registry=supervisor.metrics.registry)
    stopping = False

    def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("supervising %s (budget %d restarts per %.0f s, backoff %.1f-%.0f s)", ", ".join(supervised),
             settings.restart_budget, settings.restart_window_s, settings.restart_backoff_s,
             settings.restart_backoff_max_s)
    while not stopping:
        try:
            supervisor.tick()
        except Exception:  # noqa: BLE001 - the supervisor must outlive any one failed pass
            log.exception("supervisor pass failed")
        time.sleep(settings.supervise_interval_s)
    log.info("supervisor stopped")


if __name__ == "__main__":
    main()
