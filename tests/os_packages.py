"""One OS package installation at a time: parallel test workers (pytest-xdist) may both find Chromium or
TimescaleDB missing, and apt/dpkg allow one writer. The second waits, then finds the package installed."""

from __future__ import annotations

import fcntl
import tempfile
from contextlib import contextmanager
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "tradeloop-os-packages.lock"


@contextmanager
def installing():
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
