"""Risk management: pre-trade checks, real-time P&L and VaR, drawdown tiers, circuit breakers, kill switch.

Pure domain code (standard library, numpy, PyYAML for the limits file).  See docs/RISK.md.
"""

from trading.risk.decisions import FlattenRequest, RiskDecision, VarReport
from trading.risk.engine import RiskEngine
from trading.risk.errors import RiskConfigError, RiskDataError, RiskInputError
from trading.risk.limits import (
    AccountLimits, BreakerLimits, DrawdownLimits, ExposureLimits, LiquidationLimits, RiskLimits, StrategyLimits,
    SymbolLimits, VarSettings, load_limits,
)
from trading.risk.states import StateTransition, TradingState, scope
from trading.risk.var import VarResult

__all__ = [
    "AccountLimits", "BreakerLimits", "DrawdownLimits", "ExposureLimits", "FlattenRequest", "LiquidationLimits",
    "RiskConfigError", "RiskDataError", "RiskDecision", "RiskEngine", "RiskInputError", "RiskLimits",
    "StateTransition", "StrategyLimits", "SymbolLimits", "TradingState", "VarReport", "VarResult", "VarSettings",
    "load_limits", "scope",
]
