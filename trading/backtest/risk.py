"""Risk engine for backtests: limits from a file, time from the bars being replayed (not the wall clock)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from trading.clock import BarClock
from trading.records import Instrument


def make_risk_engine(path: str | Path, account: str, cash: Decimal,
                     instruments: Mapping[str, Instrument] | None = None) -> tuple[Any, BarClock]:
    """``(RiskEngine, clock)`` for ``BacktestConfig(risk=..., clock=...)``; bad files raise RiskConfigError."""
    from trading.risk import RiskConfigError, RiskEngine, load_limits

    if not Path(path).is_file():
        raise RiskConfigError(f"risk limits file not found: {path}")
    clock = BarClock()
    return RiskEngine(load_limits(path), account, cash, clock, instruments=instruments), clock
