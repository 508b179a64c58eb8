"""Find strategies by name through the ``tradeloop.strategies`` entry-point group.

A new strategy is a new module plus one entry-point line in its package's pyproject; a
``module:Class`` reference also works without registration (handy for experiments).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from trading.strategies.base import Strategy, StrategyError

GROUP = "tradeloop.strategies"


class UnknownStrategyError(StrategyError):
    pass


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available_strategies() -> list[str]:
    return sorted(_entry_points())


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name`` (or ``package.module:Class``)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise UnknownStrategyError(f"cannot load strategy {name!r}: {e}") from None
    else:
        ep = _entry_points().get(name)
        if ep is None:
            raise UnknownStrategyError(f"unknown strategy {name!r} (available: {', '.join(available_strategies()) or 'none'})")
        cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise UnknownStrategyError(f"{name!r} is not a Strategy subclass")
    return cls


def create_strategy(name: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Strategy:
    """Instantiate a strategy by name; parameters are validated (strings are parsed)."""
    return get_strategy(name)(**kwargs, **(params or {}))
