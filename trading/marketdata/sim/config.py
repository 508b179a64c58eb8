"""The simulated market's configuration: symbols, volatility, regimes, jumps, activity (SimConfig), and
the platform's anchored market (anchored_config)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from trading.marketdata.timeframes import NS_PER_DAY
from trading.records import NS_PER_S


MINUTES_PER_DAY = 1440


MINUTES_PER_YEAR = 525_600


CHUNK_MINUTES = 16_384  # latent path is drawn in chunks of this many minutes


TICK_BLOCK_MINUTES = 240  # ticks/quotes/books are drawn in blocks of this many minutes


MIN_TRADES_PER_MINUTE = 4  # open, high, low and close each need a trade


class SimConfigError(ValueError):
    """A SimConfig parameter out of its valid range."""


class SimRangeError(ValueError):
    """A request outside what the simulated venue can produce (before its origin, misaligned...)."""


@dataclass(frozen=True)
class SymbolSpec:
    """One simulated instrument."""

    symbol: str
    """Unified BASE/QUOTE name, e.g. "BTC/USDT"."""
    initial_price: float
    """Price at ``SimConfig.origin_ns``."""
    annual_vol: float
    """Baseline (calm regime) annualised volatility of log returns, e.g. 0.6 = 60 %."""
    tick_size: Decimal
    """Price increment; every generated price is an exact multiple of it."""
    lot_size: Decimal
    """Size increment; every generated size is an exact multiple of it."""
    volume_per_minute: float
    """Baseline traded volume per minute in base units (scaled by the activity factor)."""
    trades_per_minute: float
    """Baseline trade arrival rate per minute (scaled by the activity factor; at least 4 per minute)."""
    spread_bps: float
    """Baseline quoted spread in basis points of price (at least one tick)."""
    depth_per_level: float
    """Baseline resting size per book level in base units, at the best level."""
    annual_drift: float = 0.0
    """Annualised drift of log price."""


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTC/USDT", 42_000.0, 0.55, Decimal("0.01"), Decimal("0.00001"), 20.0, 60.0, 0.1, 2.0),
    SymbolSpec("ETH/USDT", 2_300.0, 0.65, Decimal("0.01"), Decimal("0.0001"), 250.0, 45.0, 0.2, 30.0),
    SymbolSpec("SOL/USDT", 100.0, 0.90, Decimal("0.01"), Decimal("0.001"), 3_000.0, 30.0, 1.0, 400.0),
)


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the simulated venue. Rates are per day or per minute as named; vols are of log prices."""

    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    """The simulated instruments."""
    correlation: float | tuple[tuple[float, ...], ...] = 0.7
    """Correlation of return innovations: one number for every pair, or a full symmetric matrix."""
    exchange: str = "sim"
    """Exchange name written into every record."""
    seed: int = 7
    """Seed: same config (seed included) gives identical records."""
    origin_ns: int = 1_704_067_200 * NS_PER_S
    """Start of the simulated history (UTC midnight, default 2024-01-01); nothing exists before it."""
    t_dof: float = 4.0
    """Degrees of freedom of the Student-t innovations (> 2; lower = fatter tails)."""
    vol_persistence: float = 0.995
    """Per-minute AR(1) coefficient of log-volatility, in [0, 1) (higher = longer volatility clusters)."""
    vol_of_vol: float = 0.5
    """Stationary standard deviation of log-volatility (0 = constant volatility within a regime)."""
    volatile_vol_multiplier: float = 2.0
    """Volatility in the volatile regime relative to the calm regime (>= 1)."""
    calm_to_volatile_per_day: float = 0.5
    """Expected switches per day from calm to volatile (Markov chain intensity)."""
    volatile_to_calm_per_day: float = 3.0
    """Expected switches per day from volatile back to calm."""
    jumps_per_day: float = 1.0
    """Expected market-wide price jumps per day (compound Poisson)."""
    jump_mean: float = 0.0
    """Mean log size of one jump."""
    jump_std: float = 0.01
    """Standard deviation of the log size of one jump (correlated across symbols like returns)."""
    intraday_volume_amplitude: float = 0.5
    """Depth of the U-shape of activity over the UTC day: 1 + a*cos(2*pi*time_of_day), in [0, 1)."""
    volume_vol_elasticity: float = 1.0
    """Activity scales with (volatility / baseline) to this power."""
    volume_move_sensitivity: float = 1.0
    """Activity grows by this much per standard deviation of the minute's move (volume confirms jumps)."""
    volume_noise: float = 0.3
    """Lognormal noise (sigma) of per-minute volume."""
    trade_size_dispersion: float = 1.0
    """Lognormal sigma of individual trade sizes within a minute."""
    book_levels: int = 10
    """Number of L2 levels on each side of book snapshots."""
    level_spacing_ticks: int = 1
    """Distance in ticks between consecutive book levels."""
    spread_vol_elasticity: float = 1.0
    """Spread scales with (volatility / baseline) to this power."""
    depth_vol_elasticity: float = 0.5
    """Depth scales with (baseline / volatility) to this power."""
    depth_level_growth: float = 0.3
    """Each level deeper in the book holds this fraction more than the previous one."""
    structure: float = 0.0
    """Strength of the predictable structure (order flow leading returns, see the package docstring), as a
    multiple of the documented strength: 0 = none (the null market; SimConfig's default, so research and
    tests built on SimConfig() see the plain model), 1 = the platform's market (``anchored_config``,
    setting TRADELOOP_SIM_STRUCTURE). With 0 the path is exactly the one the same seed gives without it."""
    flow_half_life_minutes: float = 240.0
    """Half-life of the order-flow imbalance (AR(1) per symbol, unit variance): how long flow persists."""
    flow_impact: float = 0.4
    """At ``structure=1``: drift of the next minute's log return per unit of imbalance, in units of that
    minute's volatility."""

    def __post_init__(self) -> None:
        def bad(name: str, value: object, why: str) -> SimConfigError:
            return SimConfigError(f"SimConfig.{name}={value!r}: {why}")

        if not self.symbols:
            raise bad("symbols", self.symbols, "needs at least one symbol")
        names = [s.symbol for s in self.symbols]
        if len(set(names)) != len(names):
            raise bad("symbols", names, "symbol names must be unique")
        for s in self.symbols:
            for attr in ("initial_price", "annual_vol", "volume_per_minute", "trades_per_minute", "depth_per_level"):
                v = getattr(s, attr)
                if not (math.isfinite(v) and v > 0):
                    raise bad(f"symbols[{s.symbol}].{attr}", v, "must be finite and > 0")
            if not (math.isfinite(s.spread_bps) and s.spread_bps >= 0):
                raise bad(f"symbols[{s.symbol}].spread_bps", s.spread_bps, "must be finite and >= 0")
            for attr in ("tick_size", "lot_size"):
                v = getattr(s, attr)
                if not (isinstance(v, Decimal) and v.is_finite() and v > 0):
                    raise bad(f"symbols[{s.symbol}].{attr}", v, "must be a positive Decimal")
        if self.origin_ns % NS_PER_DAY:
            raise bad("origin_ns", self.origin_ns, "must be a UTC midnight (multiple of one day in ns)")
        if not self.t_dof > 2:
            raise bad("t_dof", self.t_dof, "must be > 2 (finite variance)")
        if not 0 <= self.vol_persistence < 1:
            raise bad("vol_persistence", self.vol_persistence, "must be in [0, 1)")
        if not 0 <= self.intraday_volume_amplitude < 1:
            raise bad("intraday_volume_amplitude", self.intraday_volume_amplitude, "must be in [0, 1)")
        if not self.volatile_vol_multiplier >= 1:
            raise bad("volatile_vol_multiplier", self.volatile_vol_multiplier, "must be >= 1")
        for name in ("vol_of_vol", "calm_to_volatile_per_day", "volatile_to_calm_per_day", "jumps_per_day",
                     "jump_std", "volume_noise", "trade_size_dispersion", "volume_move_sensitivity",
                     "depth_level_growth"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise bad(name, v, "must be finite and >= 0")
        for name in ("calm_to_volatile_per_day", "volatile_to_calm_per_day"):
            if getattr(self, name) > MINUTES_PER_DAY:
                raise bad(name, getattr(self, name), "at most one switch per minute (<= 1440)")
        if not (math.isfinite(self.structure) and 0 <= self.structure <= 10):
            raise bad("structure", self.structure, "must be in [0, 10] (0 = null market, 1 = default strength)")
        if not (math.isfinite(self.flow_half_life_minutes) and self.flow_half_life_minutes > 0):
            raise bad("flow_half_life_minutes", self.flow_half_life_minutes, "must be finite and > 0")
        if not (math.isfinite(self.flow_impact) and 0 <= self.flow_impact < 1):
            raise bad("flow_impact", self.flow_impact, "must be in [0, 1)")
        if self.book_levels < 1 or self.level_spacing_ticks < 1:
            raise bad("book_levels/level_spacing_ticks", (self.book_levels, self.level_spacing_ticks), "must be >= 1")
        self.correlation_matrix()  # validates

    def correlation_matrix(self) -> np.ndarray:
        """The correlation matrix as an array (validated: symmetric, unit diagonal, positive definite)."""
        n = len(self.symbols)
        if isinstance(self.correlation, (int, float)):
            rho = float(self.correlation)
            m = np.full((n, n), rho)
            np.fill_diagonal(m, 1.0)
        else:
            m = np.asarray(self.correlation, dtype=float)
        if m.shape != (n, n) or not np.allclose(m, m.T) or not np.allclose(np.diag(m), 1.0):
            raise SimConfigError(f"SimConfig.correlation={self.correlation!r}: needs a symmetric {n}x{n} matrix with unit diagonal")
        try:
            np.linalg.cholesky(m)
        except np.linalg.LinAlgError:
            raise SimConfigError(f"SimConfig.correlation={self.correlation!r}: matrix is not positive definite") from None
        return m


def anchored_config(seed: int, history_start: str, structure: float = 1.0, **overrides) -> SimConfig:
    """The platform's sim market: history begins at `history_start` (YYYY-MM-DD, UTC midnight), with the
    predictable structure at ``structure`` (setting TRADELOOP_SIM_STRUCTURE; 0 = the null market).

    The historical store and the live stream both build their venue with this, so a backtest on stored
    history and a paper run on the stream see one and the same simulated market.
    """
    from datetime import date

    day = date.fromisoformat(history_start)
    origin_s = (day - date(1970, 1, 1)).days * 86_400
    return SimConfig(seed=seed, origin_ns=origin_s * NS_PER_S, structure=structure, **overrides)
