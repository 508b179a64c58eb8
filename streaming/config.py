"""How the stream trades, in one place: the default strategy set, sizing and limits (the starting
cash is the warehouse's, Settings.starting_cash).  Which
symbols is a setting (TRADELOOP_SYMBOLS): every strategy slot trades each of them (streaming/wiring.py).

Small on purpose: a fast SMA cross on 1-minute bars trades the simulated venue around the clock within
minutes of a cold start (it warms up from the 1m bars already in market_data), with 5% of equity per
symbol.

The ML strategy (``ml_signal``: streaming/ml_strategy.py, the model carrying the MLflow ``champion``
alias) is in the default set too: with no champion, or no registry, it stays flat and says why
(GET /model, the tradeloop_model_flat metric, one log line), so `make run` trades sma_cross without a
model and the ML slot starts trading as soon as a model is promoted -- no restart.  Add
``"shadow": true`` to its params to score the ``challenger`` alias beside it (recorded, never traded).
"""

from __future__ import annotations

from typing import Any

from trading.sizing import LIVE_FRACTION_PER_SYMBOL

BAR_INTERVAL = "1m"
FRACTION_PER_SYMBOL = LIVE_FRACTION_PER_SYMBOL  # one definition: the model and release gates size the same

# slot name -> (registered strategy name, params).  The slot is the `strategy` of orders and fills.
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "sma_cross_1m": ("sma_cross", {"fast": 5, "slow": 20, "ma": "sma"}),
    "ml_champion": ("ml_signal", {}),  # features use the served model's logged parameters (ml/training.py)
    # the optimiser's daily target_weights of portfolio "main" (assets/portfolio.py), traded at once when
    # they change and re-trading the drift daily; no rows: flat and says why (GET /model), like ml_champion.
    # Sized by its own allocation: the weights apply to 25% of equity (gross stays inside the account limit).
    "portfolio_main": ("target_rebalance", {"portfolio": "main", "allocation": 0.25}),
}

# trading.risk limits (RiskLimits.from_dict form); a limits file can replace them (TRADELOOP_RISK_LIMITS).
LIMITS: dict[str, Any] = {
    "symbol_defaults": {"collar_bps": 1000, "max_order_notional": 25000},
    "account": {"max_open_orders": 50, "max_gross_exposure": 60000, "max_leverage": 1.0},
    "strategy_defaults": {"max_orders_per_second": 20, "max_orders_per_minute": 300},
    "drawdown": {"reduce_at": 0.05, "stop_entries_at": 0.10, "flatten_at": 0.15},
    # historical VaR/CVaR on market_data_clean scenarios (streaming/scenarios.py): 95%, 1 day
    "var": {"confidence": 0.95, "horizon_days": 1},
}
