"""What the stream trades, in one place: the default strategy set, sizing, starting cash and limits.

Small on purpose: a fast SMA cross on 1-minute bars trades the simulated venue around the clock within
minutes of a cold start (it warms up from the 1m bars already in market_data), with 5% of equity per
symbol.  The ML strategy is not in the default set: ml/serving.py (ChampionModel) did not exist when
the stream was written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

BAR_INTERVAL = "1m"
CASH = Decimal("100000")
FRACTION_PER_SYMBOL = 0.05

# slot name -> (registered strategy name, params).  The slot is the `strategy` of orders and fills.
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "sma_cross_1m": ("sma_cross", {"fast": 5, "slow": 20, "ma": "sma"}),
}

# trading.risk limits (RiskLimits.from_dict form); a limits file can replace them (TRADELOOP_RISK_LIMITS).
LIMITS: dict[str, Any] = {
    "symbol_defaults": {"collar_bps": 1000, "max_order_notional": 25000},
    "account": {"max_open_orders": 50, "max_gross_exposure": 60000, "max_leverage": 1.0},
    "strategy_defaults": {"max_orders_per_second": 20, "max_orders_per_minute": 300},
    "drawdown": {"reduce_at": 0.05, "stop_entries_at": 0.10, "flatten_at": 0.15},
}
