"""Quiet CLI runs: the terminal gets progress and the verdict; library output goes to the log file.

Libraries write straight to the process's stdout/stderr (AutoGluon's and MLflow's "Failed to import
torch" lines, Dagster's DEBUG event log, Python warnings), some from C code or subprocesses, so both the
Python streams and file descriptors 1 and 2 are pointed at ``<log_dir>/cli-<command>.log`` for the run;
``say`` writes to the real terminal meanwhile.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO


class Quiet:
    def __init__(self, terminal: TextIO, log_path: Path) -> None:
        self.terminal, self.log_path = terminal, log_path

    def say(self, line: str) -> None:
        self.terminal.write(line + "\n")
        self.terminal.flush()


@contextmanager
def quiet_run(command: str) -> Iterator[Quiet]:
    """Everything printed inside goes to the command's log file; ``Quiet.say`` reaches the terminal."""
    from deploy.settings import get_settings

    log_dir = get_settings().log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"cli-{command}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(path, "a", buffering=1)
    saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    saved_streams = sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_root = root.level, list(root.handlers)
    file_handler = logging.StreamHandler(log)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    quiet = Quiet(terminal, path)
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        root.handlers = [file_handler]
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        yield quiet
    finally:
        logging.captureWarnings(False)
        root.setLevel(saved_root[0])
        root.handlers = saved_root[1]
        sys.stdout, sys.stderr = saved_streams
        for fd, saved in saved_fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        terminal.close()
        log.close()
