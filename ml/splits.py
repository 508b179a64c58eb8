"""Walk-forward splits with purging and an embargo (Lopez de Prado, AFML ch. 7), by time not by row.

Rows are samples (symbol, t0) whose label is decided at t1 >= t0. The test blocks are consecutive
time blocks after the first ``min_train_frac`` of the time range; a train row is kept only if
* its label was decided before the test block starts (t1 < test_start: purging), and
* it starts at least ``embargo_ns`` before the test block (t0 < test_start - embargo_ns: embargo),
so no train label overlaps a test label's information and serial correlation cannot leak across.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


class SplitError(ValueError):
    """Too little data for the requested folds."""


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row indices
    test: np.ndarray
    test_start: int  # ns
    test_end: int  # ns, exclusive


def purged_walk_forward(t0: np.ndarray, t1: np.ndarray, n_splits: int, embargo_ns: int,
                        min_train_frac: float = 0.4, min_rows: int = 50) -> Iterator[Fold]:
    t0 = np.asarray(t0, dtype=np.int64)
    t1 = np.asarray(t1, dtype=np.int64)
    if len(t0) != len(t1):
        raise SplitError(f"t0 and t1 differ in length ({len(t0)} vs {len(t1)})")
    if (t1 < t0).any():
        raise SplitError("a label ends before it starts (t1 < t0)")
    if n_splits < 1 or not 0 < min_train_frac < 1 or embargo_ns < 0:
        raise SplitError(f"bad split parameters n_splits={n_splits} min_train_frac={min_train_frac} embargo_ns={embargo_ns}")
    times = np.unique(t0)
    first_test = int(len(times) * min_train_frac)
    edges = np.linspace(first_test, len(times), n_splits + 1).astype(int)
    for k in range(n_splits):
        a, b = edges[k], edges[k + 1]
        if b <= a:
            raise SplitError(f"fold {k}: no test timestamps ({len(times)} timestamps for {n_splits} folds)")
        start = int(times[a])
        end = int(times[b]) if b < len(times) else int(times[-1]) + 1
        test = np.flatnonzero((t0 >= start) & (t0 < end))
        train = np.flatnonzero((t1 < start) & (t0 < start - embargo_ns))
        if len(train) < min_rows or len(test) < min_rows:
            raise SplitError(
                f"fold {k}: {len(train)} train and {len(test)} test rows after purging/embargo, need at least "
                f"{min_rows} each; give more data or fewer folds")
        yield Fold(k, train, test, start, end)


def holdout_split(t0: np.ndarray, t1: np.ndarray, holdout_frac: float, embargo_ns: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(train rows, holdout rows, holdout start ns): the most recent ``holdout_frac`` of time is held out
    for the promotion gate, with the same purge and embargo."""
    t0 = np.asarray(t0, dtype=np.int64)
    t1 = np.asarray(t1, dtype=np.int64)
    times = np.unique(t0)
    if len(times) < 2:
        raise SplitError("need at least two timestamps to hold out a window")
    start = int(times[min(len(times) - 1, int(len(times) * (1 - holdout_frac)))])
    return np.flatnonzero((t1 < start) & (t0 < start - embargo_ns)), np.flatnonzero(t0 >= start), start
