"""Strategies: a small interface (``base``), built-ins, a registry and the engine that runs them."""

from trading.strategies.base import (
    Context,
    Param,
    ParameterValueError,
    Strategy,
    StrategyError,
    TargetPosition,
    UnknownParameterError,
)
from trading.strategies.registry import UnknownStrategyError, available_strategies, create_strategy, get_strategy

__all__ = [
    "Context", "Param", "ParameterValueError", "Strategy", "StrategyError", "TargetPosition",
    "UnknownParameterError", "UnknownStrategyError", "available_strategies", "create_strategy", "get_strategy",
]
