"""Portfolio constraints and transaction costs, validated against the symbols they apply to.

Groups (the names InfeasibleError reports): ``bounds`` (per-asset lower/upper, long-only), ``budget``
(sum of weights == budget), ``net_leverage`` (net range when no budget), ``gross_leverage``
(sum |w| <= G), ``sector_caps`` (sum of a sector's weights <= cap), ``turnover`` (sum |w - w_current| <= T)
and ``min_trade`` (assets whose trade was below the minimum, frozen at their current weight).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from trading.portfolio.errors import ConstraintError


def _empty() -> dict:
    return {}


@dataclass(frozen=True)
class Constraints:
    long_only: bool = True
    budget: float | None = 1.0
    """Net exposure: sum of weights equals this. None leaves it free (Kelly), within ``net_range``."""
    net_range: tuple[float, float] | None = None
    """(min, max) of the sum of weights; only when ``budget`` is None."""
    lower: float | Mapping[str, float] | None = None
    """Per-asset lower bound (one number or symbol -> bound); default 0 long-only, unbounded long-short."""
    upper: float | Mapping[str, float] | None = None
    """Per-asset upper bound (one number or symbol -> bound); default unbounded."""
    gross_leverage: float | None = None
    sector_map: Mapping[str, str] = field(default_factory=_empty)
    """symbol -> sector, the same kind of map as the risk engine's ``RiskLimits.sector_map``."""
    sector_caps: Mapping[str, float] = field(default_factory=_empty)
    """sector -> maximum sum of its weights."""
    turnover: float | None = None
    """Maximum sum |w - w_current| (one-way turnover counted on both legs)."""
    min_trade: float = 0.0
    """Trades |w - w_current| below this are not made (the asset is frozen and the rest re-solved)."""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sector_map"], d["sector_caps"] = dict(self.sector_map), dict(self.sector_caps)
        for k in ("lower", "upper"):
            if isinstance(d[k], Mapping):
                d[k] = dict(d[k])
        return d

    def bounds(self, symbols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-asset (lower, upper) arrays; -inf/inf where unbounded."""
        default_lo = 0.0 if self.long_only else -math.inf
        lo = _per_asset(self.lower, symbols, default_lo, "lower")
        hi = _per_asset(self.upper, symbols, math.inf, "upper")
        if self.long_only:
            lo = np.maximum(lo, 0.0)
        return lo, hi

    def violations(self, weights: Mapping[str, float], tol: float = 1e-6) -> list[str]:
        """What ``weights`` (symbol -> weight, e.g. as stored) break of these constraints, beyond ``tol``;
        empty when they satisfy them.  Turnover and minimum trade need the previous weights: not checked."""
        symbols = sorted(weights)
        w = np.array([float(weights[s]) for s in symbols])
        problems = []
        total = float(w.sum())
        if self.budget is not None and abs(total - self.budget) > tol:
            problems.append(f"weights sum to {total:.9f}, budget is {self.budget}")
        if self.budget is None and self.net_range is not None and not (
                self.net_range[0] - tol <= total <= self.net_range[1] + tol):
            problems.append(f"weights sum to {total:.9f}, outside the net range {self.net_range}")
        lo, hi = self.bounds(symbols)
        for s, x, a, b in zip(symbols, w, lo, hi):
            if x < a - tol or x > b + tol:
                problems.append(f"{s} weight {x:.9f} outside [{a}, {b}]")
        for sector, cap in sorted(self.sector_caps.items()):
            exposure = float(sum(x for s, x in zip(symbols, w) if self.sector_map.get(s) == sector))
            if exposure > cap + tol:
                problems.append(f"sector {sector} weight {exposure:.9f} above cap {cap}")
        gross = float(np.abs(w).sum())
        if self.gross_leverage is not None and gross > self.gross_leverage + tol:
            problems.append(f"gross exposure {gross:.9f} above {self.gross_leverage}")
        return problems

    def validate(self, symbols: Sequence[str]) -> None:
        if len(set(symbols)) != len(symbols):
            raise ConstraintError(f"duplicate symbols in {list(symbols)}")
        lo, hi = self.bounds(symbols)
        bad = [s for s, a, b in zip(symbols, lo, hi) if a > b]
        if bad:
            raise ConstraintError(f"lower bound above upper bound for {bad}")
        if self.budget is not None and not math.isfinite(self.budget):
            raise ConstraintError(f"budget must be finite, got {self.budget}")
        if self.budget is not None and self.net_range is not None:
            raise ConstraintError("give either budget (equality) or net_range, not both")
        if self.net_range is not None and not self.net_range[0] <= self.net_range[1]:
            raise ConstraintError(f"net_range min above max: {self.net_range}")
        for name in ("gross_leverage", "turnover"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ConstraintError(f"{name} must be a finite number >= 0, got {v}")
        if not (math.isfinite(self.min_trade) and self.min_trade >= 0):
            raise ConstraintError(f"min_trade must be >= 0, got {self.min_trade}")
        if self.sector_caps:
            missing = [s for s in symbols if s not in self.sector_map]
            if missing:
                raise ConstraintError(f"sector_map: symbol(s) {missing} have no sector but sector caps are configured")
            used = set(self.sector_map[s] for s in symbols)
            for sector, cap in self.sector_caps.items():
                if sector not in used:
                    raise ConstraintError(f"sector_caps.{sector}: no symbol in sector_map belongs to this sector")
                if not math.isfinite(cap):
                    raise ConstraintError(f"sector_caps.{sector}: cap must be finite, got {cap}")


def _per_asset(value: float | Mapping[str, float] | None, symbols: Sequence[str], default: float, name: str) -> np.ndarray:
    if value is None:
        return np.full(len(symbols), default)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(symbols))
        if unknown:
            raise ConstraintError(f"{name} bound given for unknown symbol(s) {unknown}")
        return np.array([float(value.get(s, default)) for s in symbols])
    v = float(value)
    if math.isnan(v):
        raise ConstraintError(f"{name} bound is NaN")
    return np.full(len(symbols), v)


@dataclass(frozen=True)
class Costs:
    """Transaction costs in weight units, charged in the objective on dw = w - w_current:
    ``fee * |dw| + impact * |dw|^1.5`` (linear fees and spread, square-root-law market impact)."""

    fee: float | Sequence[float] = 0.0
    impact: float | Sequence[float] = 0.0

    def arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        fee = np.broadcast_to(np.asarray(self.fee, dtype=float), (n,)).copy()
        impact = np.broadcast_to(np.asarray(self.impact, dtype=float), (n,)).copy()
        if np.any(fee < 0) or np.any(impact < 0) or not (np.all(np.isfinite(fee)) and np.all(np.isfinite(impact))):
            raise ConstraintError("transaction cost coefficients must be finite and >= 0")
        return fee, impact

    @property
    def active(self) -> bool:
        return bool(np.any(np.asarray(self.fee) != 0) or np.any(np.asarray(self.impact) != 0))

    def cost(self, dw: np.ndarray) -> float:
        fee, impact = self.arrays(len(dw))
        a = np.abs(dw)
        return float(fee @ a + impact @ a ** 1.5)
