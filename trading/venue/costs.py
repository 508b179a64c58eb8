"""Trading costs of the paper venue: fees, slippage + square-root market impact, and latency."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import Decimal

from trading.records import Liquidity

_BPS = Decimal("10000")


class CostModelError(ValueError):
    """A fee, impact or latency parameter is out of range."""


def _dec(x: float | Decimal | int) -> Decimal:
    # str() so that 1.1 becomes Decimal("1.1"), not its binary approximation.
    return x if isinstance(x, Decimal) else Decimal(str(x))


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker/taker fees of one venue in basis points of notional (a negative maker fee is a rebate)."""

    maker_bps: float = 1.0
    taker_bps: float = 5.0

    def __post_init__(self) -> None:
        for name in ("maker_bps", "taker_bps"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or abs(v) >= 10_000:
                raise CostModelError(f"FeeSchedule.{name} must be finite and below 10000 bps, got {v!r}")

    def fee(self, notional: Decimal, liquidity: Liquidity) -> Decimal:
        bps = self.maker_bps if liquidity is Liquidity.MAKER else self.taker_bps
        return abs(notional) * _bps_decimal(bps) / _BPS


_BPS_DEC: dict[tuple[type, float], Decimal] = {}


def _bps_decimal(bps: float) -> Decimal:
    """_dec(bps), memoised: a fee schedule has two rates and every fill asked for a fresh conversion.
    Keyed with the type too, because 1 == 1.0 but _dec gives Decimal("1") and Decimal("1.0")."""
    key = (type(bps), bps)
    d = _BPS_DEC.get(key)
    if d is None:
        d = _BPS_DEC[key] = _dec(bps)
    return d


@dataclass(frozen=True, slots=True)
class ImpactModel:
    """Adverse price move paid by orders that take liquidity in bar mode.

    fraction = slippage_bps / 1e4 + coefficient * volatility * sqrt(quantity / volume)

    the square-root law (impact grows with the square root of the share of volume traded, scaled by
    volatility).  ``volatility`` is a relative volatility per bar; when None the fill bar's own range
    (high - low) / open is used as the estimate.  Book mode needs no model: walking real depth is the impact.
    """

    coefficient: float = 0.1
    slippage_bps: float = 0.0
    volatility: float | None = None
    max_fraction: float = 0.5  # cap so a huge order against a tiny bar cannot produce a negative sell price

    def __post_init__(self) -> None:
        for name in ("coefficient", "slippage_bps", "max_fraction"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise CostModelError(f"ImpactModel.{name} must be finite and >= 0, got {v!r}")
        if self.max_fraction >= 1:
            raise CostModelError(f"ImpactModel.max_fraction must be < 1, got {self.max_fraction!r}")
        if self.volatility is not None and (not math.isfinite(self.volatility) or self.volatility < 0):
            raise CostModelError(f"ImpactModel.volatility must be finite and >= 0, got {self.volatility!r}")

    def fraction(self, quantity: float, volume: float, volatility: float) -> float:
        """Relative adverse move for ``quantity`` traded against ``volume`` (same units)."""
        vol = self.volatility if self.volatility is not None else volatility
        frac = self.slippage_bps / 1e4
        if quantity > 0 and vol > 0 and self.coefficient > 0:
            # No volume printed: the order is all of the volume, so the participation term is 1.
            participation = quantity / volume if volume > 0 else 1.0
            frac += self.coefficient * vol * math.sqrt(participation)
        return min(frac, self.max_fraction)

    def fill_price(self, price: Decimal, buy: bool, quantity: Decimal, volume: Decimal, volatility: float) -> Decimal:
        """``price`` moved against the order: up for a buy, down for a sell."""
        frac = self.fraction(float(quantity), float(volume), volatility)
        if frac == 0:
            return price
        move = price * _dec(frac)
        return price + move if buy else price - move


@dataclass(slots=True)
class LatencyModel:
    """Order-to-venue and venue-to-fill delays in ns, drawn from a seeded generator.

    "fixed" always returns the given delay; "lognormal" has the given delay as its median and
    ``sigma`` as the log-space spread.  The same seed and the same sequence of draws give the same delays.
    """

    order_to_venue_ns: int = 0
    venue_to_fill_ns: int = 0
    distribution: str = "fixed"
    seed: int = 0
    sigma: float = 0.5
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.distribution not in ("fixed", "lognormal"):
            raise CostModelError(f"LatencyModel.distribution must be 'fixed' or 'lognormal', got {self.distribution!r}")
        for name in ("order_to_venue_ns", "venue_to_fill_ns"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise CostModelError(f"LatencyModel.{name} must be an int >= 0, got {v!r}")
        if not math.isfinite(self.sigma) or self.sigma < 0:
            raise CostModelError(f"LatencyModel.sigma must be finite and >= 0, got {self.sigma!r}")
        self._rng = random.Random(self.seed)

    @property
    def is_zero(self) -> bool:
        return self.order_to_venue_ns == 0 and self.venue_to_fill_ns == 0

    def _draw(self, median_ns: int) -> int:
        if median_ns == 0:
            return 0
        if self.distribution == "fixed":
            return median_ns
        return int(median_ns * math.exp(self.sigma * self._rng.gauss(0.0, 1.0)))

    def order_to_venue(self) -> int:
        return self._draw(self.order_to_venue_ns)

    def venue_to_fill(self) -> int:
        return self._draw(self.venue_to_fill_ns)
