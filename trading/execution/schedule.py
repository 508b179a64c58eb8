"""TWAP and VWAP: work a parent quantity through scheduled slices.

Slice k (0-based, of n) starts at ``start_ts + (end_ts - start_ts) * k // n``.  By the end of slice k the
parent aims to have ``quantity x (weights[0] + ... + weights[k]) / sum(weights)`` sent (floored to lots;
the last slice sends the rest), with equal weights for TWAP and a historical volume profile for VWAP.
At each slice the child still open from before is canceled and its unfilled part rolled into the new child,
so a late fill never makes the parent buy more than its schedule.  Slices missed between two ``on_time``
calls are merged into one child (numbered by the latest slice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from trading.execution.base import Action, ExecutionError, ParentOrder
from trading.records import NS_PER_S, Bar

NS_PER_DAY = 86_400 * NS_PER_S


class ScheduledParent(ParentOrder):
    """A parent order that follows cumulative targets over fixed time slices."""

    def __init__(self, *args, start_ts: int, end_ts: int, weights: Sequence[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if end_ts <= start_ts:
            raise ExecutionError(f"end_ts {end_ts} must be after start_ts {start_ts}")
        if not weights or any(not (w >= 0) for w in weights) or sum(weights) <= 0:
            raise ExecutionError(f"weights must be non-negative with a positive sum, got {list(weights)!r}")
        n = len(weights)
        if end_ts - start_ts < n:
            raise ExecutionError(f"{n} slices do not fit between start_ts {start_ts} and end_ts {end_ts}")
        self.start_ts, self.end_ts = start_ts, end_ts
        self.slice_ts = [start_ts + (end_ts - start_ts) * k // n for k in range(n)]
        total = Decimal(repr(float(sum(weights))))
        cum = Decimal(0)
        self.targets: list[Decimal] = []
        for w in weights:
            cum += Decimal(repr(float(w)))
            self.targets.append(min(self.quantity, self._floor_lot(self.quantity * cum / total)))
        self.targets[-1] = self.quantity
        self.next_slice = 0

    def _on_time(self, ts: int) -> list[Action]:
        k = self.next_slice
        while k < len(self.slice_ts) and self.slice_ts[k] <= ts:
            k += 1
        if k == self.next_slice:
            return []
        self.next_slice = k
        last = k - 1
        actions: list[Action] = self._cancel_open(ts)
        qty = self.targets[last] - self.filled
        if qty > 0:
            actions.append(self._child(last, qty, ts))
        return actions


class TWAP(ScheduledParent):
    """Equal quantity per slice over [start_ts, end_ts)."""

    def __init__(self, *args, start_ts: int, end_ts: int, n_slices: int, **kwargs) -> None:
        if not isinstance(n_slices, int) or n_slices <= 0:
            raise ExecutionError(f"n_slices must be a positive int, got {n_slices!r}")
        super().__init__(*args, start_ts=start_ts, end_ts=end_ts, weights=[1.0] * n_slices, **kwargs)


class VWAP(ScheduledParent):
    """Quantity per slice in proportion to a volume profile (see ``volume_profile``)."""

    def __init__(self, *args, start_ts: int, end_ts: int, profile: Sequence[float], **kwargs) -> None:
        super().__init__(*args, start_ts=start_ts, end_ts=end_ts, weights=list(profile), **kwargs)


def volume_profile(bars: Iterable[Bar], n_slices: int, period_ns: int = NS_PER_DAY,
                   offset_ns: int = 0) -> list[float]:
    """Share of volume traded in each of ``n_slices`` equal parts of a recurring period, from history.

    A bar counts toward the slice its open time falls in, measured from ``offset_ns`` into the period
    (e.g. period one day, offset 0: slices of the UTC day).  Fractions sum to 1.
    """
    if not isinstance(n_slices, int) or n_slices <= 0:
        raise ExecutionError(f"n_slices must be a positive int, got {n_slices!r}")
    if period_ns <= 0:
        raise ExecutionError(f"period_ns must be > 0, got {period_ns!r}")
    volumes = [0.0] * n_slices
    for b in bars:
        pos = (b.exchange_ts - offset_ns) % period_ns
        volumes[pos * n_slices // period_ns] += float(b.volume)
    total = sum(volumes)
    if total <= 0:
        raise ExecutionError("the bars hold no volume; a volume profile needs some")
    return [v / total for v in volumes]
