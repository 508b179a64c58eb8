"""Position sizing: turn a strategy's signed target (e.g. +1 long, -0.5 half short, or a weight) into a
signed quantity, rounded toward zero to the instrument's lot size.

A sizer never returns NaN, and the magnitude it returns is never more than asked for: missing or
degenerate inputs (zero volatility, non-positive equity) give 0, impossible ones raise ``SizingError``.
Quantities are Decimal, computed with Decimal arithmetic so the same inputs give the same quantity
in the backtester and in the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Protocol, Sequence

from trading.records import Instrument

ZERO = Decimal(0)

LIVE_FRACTION_PER_SYMBOL = 0.05
"""The stream's sizing: FixedFraction of equity per symbol and unit of target (streaming/config.py); the
promotion gate (ml/gate.py) sizes a model's trades the same way."""


class SizingError(ValueError):
    """Invalid sizing parameter or input."""


def to_decimal(x: float | int | Decimal, name: str = "value") -> Decimal:
    """Exact, deterministic float -> Decimal (shortest repr), rejecting NaN/inf."""
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, bool):
        raise SizingError(f"{name} must be a number, got {x!r}")
    elif isinstance(x, int):
        d = Decimal(x)
    else:
        x = float(x)
        if not math.isfinite(x):
            raise SizingError(f"{name} must be finite, got {x!r}")
        d = Decimal(repr(x))
    if not d.is_finite():
        raise SizingError(f"{name} must be finite, got {x!r}")
    return d


def round_to_lot(quantity: Decimal, lot_size: Decimal) -> Decimal:
    """Round toward zero to a whole number of lots (never rounds a position up past what was asked)."""
    if lot_size <= 0:
        raise SizingError(f"lot_size must be > 0, got {lot_size}")
    lots = (quantity / lot_size).to_integral_value(rounding=ROUND_DOWN)
    return (lots * lot_size).normalize() if lots else ZERO


class Sizer(Protocol):
    """``quantity`` returns the signed target position for a signed target signal."""

    lookback: int  # bars of volatility history the sizer needs (0 = none)

    def quantity(
        self, target: float, price: Decimal, equity: Decimal, instrument: Instrument, volatility: float | None = None
    ) -> Decimal: ...


def _check_common(target: float, price: Decimal) -> Decimal:
    t = to_decimal(target, "target")
    if not price.is_finite() or price <= 0:
        raise SizingError(f"price must be > 0, got {price}")
    return t


def _notional_to_quantity(notional: Decimal, price: Decimal, instrument: Instrument) -> Decimal:
    return round_to_lot(notional / price, instrument.lot_size)


@dataclass(frozen=True)
class FixedQuantity:
    """``units`` of the instrument per unit of target (target +1 -> a position of ``units``)."""

    units: Decimal
    lookback: int = 0

    def __post_init__(self) -> None:
        if to_decimal(self.units, "units") < 0:
            raise SizingError(f"units must be >= 0, got {self.units}")

    def quantity(self, target, price, equity, instrument, volatility=None):  # type: ignore[override]
        t = _check_common(target, price)
        return round_to_lot(to_decimal(self.units, "units") * t, instrument.lot_size)


@dataclass(frozen=True)
class FixedFraction:
    """``fraction`` of equity per unit of target (target +1 with fraction 0.5 -> half the equity long)."""

    fraction: float = 1.0
    lookback: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fraction) and self.fraction >= 0):
            raise SizingError(f"fraction must be a finite number >= 0, got {self.fraction!r}")
        # converted once: quantity() runs on every order decision of the live hot path
        object.__setattr__(self, "_fraction_dec", to_decimal(self.fraction))

    def quantity(self, target, price, equity, instrument, volatility=None):  # type: ignore[override]
        t = _check_common(target, price)
        if equity <= 0:
            return ZERO
        return _notional_to_quantity(equity * self._fraction_dec * t, price, instrument)


@dataclass(frozen=True)
class VolatilityTarget:
    """Scale exposure so that position volatility ~= ``target_vol`` (same units as the volatility given,
    e.g. per-bar or annualised), capped at ``max_leverage`` x equity.  No volatility estimate -> 0.
    """

    target_vol: float
    lookback: int = 20
    max_leverage: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_vol) and self.target_vol > 0):
            raise SizingError(f"target_vol must be > 0, got {self.target_vol!r}")
        if not (math.isfinite(self.max_leverage) and self.max_leverage >= 0):
            raise SizingError(f"max_leverage must be >= 0, got {self.max_leverage!r}")
        if self.lookback < 2:
            raise SizingError(f"lookback must be >= 2, got {self.lookback!r}")

    def quantity(self, target, price, equity, instrument, volatility=None):  # type: ignore[override]
        t = _check_common(target, price)
        if equity <= 0 or volatility is None or not math.isfinite(volatility) or volatility <= 0:
            return ZERO
        leverage = min(self.max_leverage, self.target_vol / volatility)
        return _notional_to_quantity(equity * to_decimal(leverage) * t, price, instrument)


@dataclass(frozen=True)
class FractionalKelly:
    """``fraction`` x Kelly fraction f* = p - (1 - p) / b (win rate p, payoff b = avg win / avg loss),
    floored at 0 (no edge -> no position) and capped at ``max_leverage``.
    """

    win_rate: float
    payoff: float
    fraction: float = 0.5
    max_leverage: float = 1.0
    lookback: int = 0

    def __post_init__(self) -> None:
        if not (0.0 <= self.win_rate <= 1.0):
            raise SizingError(f"win_rate must be in [0, 1], got {self.win_rate!r}")
        if not (math.isfinite(self.payoff) and self.payoff > 0):
            raise SizingError(f"payoff must be > 0, got {self.payoff!r}")
        if not (0.0 <= self.fraction <= 1.0):
            raise SizingError(f"fraction must be in [0, 1], got {self.fraction!r}")
        if not (math.isfinite(self.max_leverage) and self.max_leverage >= 0):
            raise SizingError(f"max_leverage must be >= 0, got {self.max_leverage!r}")

    @classmethod
    def from_trades(cls, pnls: Sequence[float], fraction: float = 0.5, max_leverage: float = 1.0) -> "FractionalKelly":
        """Estimate p and b from past round-trip P&Ls (needs at least one win and one loss)."""
        wins = [p for p in pnls if p > 0]
        losses = [-p for p in pnls if p < 0]
        if not wins or not losses:
            raise SizingError(f"need at least one winning and one losing trade, got {len(wins)} and {len(losses)}")
        payoff = (sum(wins) / len(wins)) / (sum(losses) / len(losses))
        return cls(len(wins) / len(pnls), payoff, fraction, max_leverage)

    @property
    def kelly(self) -> float:
        return self.win_rate - (1.0 - self.win_rate) / self.payoff

    @property
    def leverage(self) -> float:
        return max(0.0, min(self.max_leverage, self.fraction * self.kelly))

    def quantity(self, target, price, equity, instrument, volatility=None):  # type: ignore[override]
        t = _check_common(target, price)
        if equity <= 0:
            return ZERO
        return _notional_to_quantity(equity * to_decimal(self.leverage) * t, price, instrument)
