"""Interval strings ("1s", "1m", "5m", "1h", "1d", "1w") <-> nanoseconds, shared by every market-data module."""

from __future__ import annotations

import re

from trading.records import NS_PER_S

_UNIT_NS = {"s": NS_PER_S, "m": 60 * NS_PER_S, "h": 3600 * NS_PER_S, "d": 86400 * NS_PER_S, "w": 7 * 86400 * NS_PER_S}
_PATTERN = re.compile(r"^([1-9][0-9]*)([smhdw])$")

NS_PER_MINUTE = _UNIT_NS["m"]
NS_PER_DAY = _UNIT_NS["d"]


class IntervalError(ValueError):
    """An interval string that is not <positive int><s|m|h|d|w>."""


def interval_ns(interval: str) -> int:
    """Length of ``interval`` in ns. Months are rejected: they have no fixed length."""
    match = _PATTERN.match(interval) if isinstance(interval, str) else None
    if match is None:
        raise IntervalError(f"interval {interval!r} is not <positive int><s|m|h|d|w>, e.g. '1m', '4h'")
    return int(match.group(1)) * _UNIT_NS[match.group(2)]
