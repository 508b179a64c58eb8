"""The risk package's exceptions: all are ValueErrors whose message names the offending field or value."""

from __future__ import annotations


class RiskConfigError(ValueError):
    """A limits file or update is invalid; the message names the key (e.g. ``symbols.BTC/USDT.max_position``)."""


class RiskInputError(ValueError):
    """A record handed to the engine is malformed (wrong account, non-positive fill, unknown scope...)."""


class RiskDataError(ValueError):
    """A risk number cannot be computed honestly (no valid or a stale mark, no scenarios for a symbol)."""
