"""Start, watch and stop one detached service process; its record lives in `<home>/run/<name>.json`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from deploy.errors import StackError  # noqa: F401 -- defined a layer down (deploy/dbroles.py raises it)




@dataclass
class ServiceRecord:
    name: str
    pid: int
    port: int
    url: str
    log: str
    started_at: float
    create_time: float  # guards against a recycled pid being mistaken for our process
    log_offset: int = 0  # where this run's output starts in the (appended) log file

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{self.name}.json.tmp"
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(run_dir / f"{self.name}.json")  # atomic: never a half-written record

    @classmethod
    def load(cls, run_dir: Path, name: str) -> "ServiceRecord | None":
        path = run_dir / f"{name}.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def process(self) -> psutil.Process | None:
        """The live process, or None if it has exited (or the pid now belongs to someone else)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


def as_user(user: str | None) -> dict:
    """subprocess kwargs that drop to `user` (uid, its primary gid, no inherited supplementary groups)."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def spawn(
    name: str,
    argv: list[str],
    *,
    port: int,
    url: str,
    log_dir: Path,
    run_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ServiceRecord:
    """Start `argv` detached (own session, so a Ctrl-C in the caller's terminal does not reach it)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        log_offset = log.tell()
        try:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=full_env, cwd=cwd, start_new_session=True, **as_user(user),
            )
        except FileNotFoundError as exc:
            raise StackError(f"{name}: executable not found: {argv[0]} ({exc.strerror}); see {log_path}") from None
    record = ServiceRecord(
        name=name, pid=proc.pid, port=port, url=url, log=str(log_path),
        started_at=time.time(), create_time=psutil.Process(proc.pid).create_time(), log_offset=log_offset,
    )
    record.save(run_dir)
    return record


def log_since_start(record: ServiceRecord) -> str:
    try:
        with open(record.log, "rb") as f:
            f.seek(record.log_offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def wait_healthy(record: ServiceRecord, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it passes; fail fast if the process dies while we wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        proc = record.process()
        if proc is None:
            raise StackError(f"{record.name}: exited during start-up; see {record.log}")
        time.sleep(0.2)
    raise StackError(f"{record.name}: not healthy after {timeout:.0f} s; see {record.log}")


def stop(record: ServiceRecord, run_dir: Path, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """Send `sig` to the service's process group, SIGKILL what is left after `timeout`.

    Returns True if it was running. PostgreSQL is stopped with SIGINT (its "fast" shutdown: SIGTERM
    would wait for every client to disconnect).
    """
    proc = record.process()
    was_running = proc is not None
    if proc is not None:
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            try:
                os.killpg(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    # children that left the group (rare) are not ours to hunt; the record goes either way
    (run_dir / f"{record.name}.json").unlink(missing_ok=True)
    return was_running
