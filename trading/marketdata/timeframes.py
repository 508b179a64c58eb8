"""Interval strings ("1s", "1m", "5m", "1h", "1d", "1w") <-> nanoseconds: the one definition for the
whole platform (market data, strategy engine, backtester, stream, ml)."""

from __future__ import annotations

import re

from trading.records import NS_PER_S

_UNIT_NS = {"s": NS_PER_S, "m": 60 * NS_PER_S, "h": 3600 * NS_PER_S, "d": 86400 * NS_PER_S, "w": 7 * 86400 * NS_PER_S}
_PATTERN = re.compile(r"^([1-9][0-9]*)([smhdw])$")

NS_PER_MINUTE = _UNIT_NS["m"]
NS_PER_DAY = _UNIT_NS["d"]

# parsed intervals: the strategy engine asks twice per bar, and a regex each time showed in profiles
_CACHE: dict[str, int] = {}


class IntervalError(ValueError):
    """An interval string that is not <positive int><s|m|h|d|w>."""


def interval_ns(interval: str) -> int:
    """Length of ``interval`` in ns. Months are rejected: they have no fixed length."""
    ns = _CACHE.get(interval) if isinstance(interval, str) else None
    if ns is not None:
        return ns
    match = _PATTERN.match(interval) if isinstance(interval, str) else None
    if match is None:
        raise IntervalError(f"interval {interval!r} is not <positive int><s|m|h|d|w>, e.g. '1m', '4h'")
    ns = _CACHE[interval] = int(match.group(1)) * _UNIT_NS[match.group(2)]
    return ns


def interval_label(ns: int) -> str:
    """The largest whole unit that divides ``ns``: 60e9 -> '1m', 5400e9 -> '90m'."""
    if ns > 0:
        for unit in ("w", "d", "h", "m", "s"):
            if ns % _UNIT_NS[unit] == 0:
                return f"{ns // _UNIT_NS[unit]}{unit}"
    raise IntervalError(f"bar interval of {ns} ns is not a positive whole number of seconds")
