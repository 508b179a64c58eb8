"""``sim``: a simulated venue that generates realistic market data with no network (the default source).

Model (one latent step per minute, all symbols at once; docs/SIM_VENUE.md explains it):

* log-volatility: a common AR(1) factor (volatility clustering) shifted up in the *volatile* state of
  a two-state Markov regime chain (calm/volatile);
* returns: Student-t innovations (fat tails) correlated across symbols through the Cholesky factor of
  the configured correlation matrix, plus compound-Poisson market-wide jumps;
* minute high/low: the extremes of a Brownian bridge between open and close (closed form);
* activity (volume and trade count) follows a U-shape over the UTC day, the volatility level and the
  size of the move; trades arrive as a Cox (doubly stochastic Poisson) process with that intensity;
* ticks: a path inside each minute that starts at the open, touches the high and the low and ends at
  the close, so bars aggregate exactly the path the ticks follow; quotes and an L2 book sit around the
  trades with a spread that widens and depth that thins when volatility is high.

Everything is a deterministic function of ``SimConfig`` (seed included): the path is anchored at
``origin_ns`` and random numbers are drawn per fixed-size block, so any query of any window returns the
same data, and the first ``n`` records do not depend on how many were asked for.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import polars as pl

from trading.marketdata.timeframes import NS_PER_DAY, NS_PER_MINUTE, interval_ns
from trading.records import (
    NS_PER_S,
    AggressorSide,
    Bar,
    BookLevel,
    BookSnapshot,
    Instrument,
    Quote,
    Tick,
)

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


@dataclass(slots=True)
class _State:
    """Latent state at a chunk boundary: enough to continue the path."""

    x: float  # common log-volatility factor
    regime: int  # 0 calm, 1 volatile
    log_price: np.ndarray  # (S,) unrounded log price
    close: np.ndarray  # (S,) last close in ticks


@dataclass(slots=True)
class _Minutes:
    """Per-minute bars of all symbols, prices in ticks and volume in lots; arrays are (M, S)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    sigma: np.ndarray  # per-minute diffusion sd of log price
    vol_mult: np.ndarray  # (M,) volatility relative to baseline

    def slice(self, a: int, b: int) -> "_Minutes":
        return _Minutes(*(getattr(self, f)[a:b] for f in _MINUTE_FIELDS))


_MINUTE_FIELDS = ("open", "high", "low", "close", "volume", "trades", "sigma", "vol_mult")


@dataclass(slots=True)
class _TickBlock:
    """Trades and the quote after each trade, for one symbol and one block of minutes."""

    ts: np.ndarray
    price: np.ndarray  # ticks
    lots: np.ndarray
    side: np.ndarray  # +1 buyer-initiated, -1 seller-initiated
    seq: np.ndarray  # trade number within its minute
    minute: np.ndarray  # global minute index
    bid: np.ndarray
    ask: np.ndarray
    bid_lots: np.ndarray
    ask_lots: np.ndarray
    vol_mult: np.ndarray


def _ar1(e: np.ndarray, phi: float, x0: float) -> np.ndarray:
    """x[t] = phi * x[t-1] + e[t] with x[-1] = x0, vectorised in blocks short enough that phi**-k stays finite."""
    if phi == 0.0:
        return e.copy()
    out = np.empty_like(e)
    block = max(1, int(600.0 / -math.log(phi)))
    for s in range(0, len(e), block):
        blk = e[s : s + block]
        pw = phi ** np.arange(1, len(blk) + 1)
        xb = pw * (x0 + np.cumsum(blk / pw))
        out[s : s + len(blk)] = xb
        x0 = float(xb[-1])
    return out


class SimVenue:
    """The simulated venue. Batch methods are as fast as possible; ``stream`` paces records to a clock."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self._specs = cfg.symbols
        self.symbols: tuple[str, ...] = tuple(s.symbol for s in cfg.symbols)
        self._chol = np.linalg.cholesky(cfg.correlation_matrix())
        self._tick = np.array([float(s.tick_size) for s in cfg.symbols])
        self._lot = np.array([float(s.lot_size) for s in cfg.symbols])
        self._tick_dec = [s.tick_size for s in cfg.symbols]
        self._lot_dec = [s.lot_size for s in cfg.symbols]
        self._sigma_min = np.array([s.annual_vol for s in cfg.symbols]) / math.sqrt(MINUTES_PER_YEAR)
        self._drift_min = np.array([s.annual_drift for s in cfg.symbols]) / MINUTES_PER_YEAR
        p0 = np.array([s.initial_price for s in cfg.symbols])
        close0 = np.maximum(np.rint(p0 / self._tick), 1).astype(np.int64)
        self._states: list[_State] = [_State(0.0, 0, np.log(close0 * self._tick), close0)]
        self._chunks: OrderedDict[int, _Minutes] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int], _TickBlock] = OrderedDict()

    def instruments(self) -> tuple[Instrument, ...]:
        return tuple(Instrument(self.config.exchange, s.symbol, s.tick_size, s.lot_size) for s in self._specs)

    # ------------------------------------------------------------------ latent per-minute path

    def _regimes(self, rng: np.random.Generator, start: int, n: int) -> np.ndarray:
        leave = (self.config.calm_to_volatile_per_day / MINUTES_PER_DAY, self.config.volatile_to_calm_per_day / MINUTES_PER_DAY)
        out = np.empty(n, dtype=np.int8)
        pos, state = 0, start
        while pos < n:
            stay = int(rng.geometric(leave[state])) if leave[state] > 0 else n
            out[pos : pos + stay] = state
            pos += stay
            state = 1 - state
        return out

    def _make_chunk(self, c: int, st: _State) -> tuple[_Minutes, _State]:
        cfg, k, s = self.config, CHUNK_MINUTES, len(self._specs)
        rng = np.random.default_rng([cfg.seed, c, 0])
        regime = self._regimes(rng, st.regime, k)
        phi, vv = cfg.vol_persistence, cfg.vol_of_vol
        x = _ar1(rng.standard_normal(k) * (vv * math.sqrt(1 - phi * phi)), phi, st.x)
        # exp(x - vv^2) has mean square 1, so annual_vol is the calm-regime average
        vol_mult = np.exp(x - vv * vv) * np.where(regime == 1, cfg.volatile_vol_multiplier, 1.0)
        nu = cfg.t_dof
        g = rng.standard_normal((k, s)) @ self._chol.T
        # a shared chi-square mixing variable makes a multivariate t: fat tails with the same correlation
        z = g * np.sqrt((nu - 2.0) / rng.chisquare(nu, k))[:, None]
        sigma = self._sigma_min[None, :] * vol_mult[:, None]
        ret = self._drift_min[None, :] - 0.5 * sigma * sigma + sigma * z
        n_jumps = rng.poisson(cfg.jumps_per_day / MINUTES_PER_DAY, k)
        hit = np.nonzero(n_jumps)[0]
        if hit.size:
            nj = n_jumps[hit][:, None]
            ret[hit] += nj * cfg.jump_mean + np.sqrt(nj) * cfg.jump_std * (rng.standard_normal((hit.size, s)) @ self._chol.T)
        log_price = st.log_price[None, :] + np.cumsum(ret, axis=0)
        close = np.maximum(np.rint(np.exp(log_price) / self._tick), 1).astype(np.int64)
        open_ = np.empty_like(close)
        open_[0] = st.close
        open_[1:] = close[:-1]
        lo, lc = np.log(open_ * self._tick), np.log(close * self._tick)
        d2, var = (lc - lo) ** 2, sigma * sigma
        # extremes of a Brownian bridge from lo to lc: 0.5*(a+b +- sqrt((b-a)^2 - 2 var ln U))
        hi_log = 0.5 * (lo + lc + np.sqrt(d2 - 2.0 * var * np.log1p(-rng.random((k, s)))))
        lo_log = 0.5 * (lo + lc - np.sqrt(d2 - 2.0 * var * np.log1p(-rng.random((k, s)))))
        high = np.maximum(np.maximum(open_, close), np.rint(np.exp(hi_log) / self._tick).astype(np.int64))
        low = np.minimum(np.minimum(open_, close), np.maximum(np.rint(np.exp(lo_log) / self._tick), 1).astype(np.int64))
        minute = c * k + np.arange(k)
        u_shape = 1.0 + cfg.intraday_volume_amplitude * np.cos(2.0 * math.pi * (minute % MINUTES_PER_DAY) / MINUTES_PER_DAY)
        move = np.abs(ret) / sigma
        activity = (u_shape * vol_mult**cfg.volume_vol_elasticity)[:, None] * (
            (1.0 + cfg.volume_move_sensitivity * move) / (1.0 + cfg.volume_move_sensitivity * math.sqrt(2 / math.pi))
        )
        tpm = np.array([sp.trades_per_minute for sp in self._specs])
        trades = np.maximum(rng.poisson(tpm[None, :] * activity), MIN_TRADES_PER_MINUTE)
        vpm_lots = np.array([sp.volume_per_minute for sp in self._specs]) / self._lot
        noise = np.exp(cfg.volume_noise * rng.standard_normal((k, s)) - 0.5 * cfg.volume_noise**2)
        volume = np.maximum(np.rint(vpm_lots[None, :] * activity * noise).astype(np.int64), trades)
        data = _Minutes(open_, high, low, close, volume, trades.astype(np.int64), sigma, vol_mult)
        return data, _State(float(x[-1]), int(regime[-1]), log_price[-1].copy(), close[-1].copy())

    def _chunk(self, c: int) -> _Minutes:
        if c in self._chunks:
            self._chunks.move_to_end(c)
            return self._chunks[c]
        while len(self._states) <= c:  # only boundary states are kept: walk forward to reach chunk c
            i = len(self._states) - 1
            data, nxt = self._make_chunk(i, self._states[i])
            self._states.append(nxt)
            self._remember(i, data)
        data, nxt = self._make_chunk(c, self._states[c])
        if len(self._states) == c + 1:
            self._states.append(nxt)
        self._remember(c, data)
        return data

    def _remember(self, c: int, data: _Minutes) -> None:
        self._chunks[c] = data
        while len(self._chunks) > 4:
            self._chunks.popitem(last=False)

    def _minutes(self, m0: int, m1: int) -> _Minutes:
        """Per-minute data for global minutes [m0, m1)."""
        parts = []
        m = m0
        while m < m1:
            c, off = divmod(m, CHUNK_MINUTES)
            take = min(m1 - m, CHUNK_MINUTES - off)
            parts.append(self._chunk(c).slice(off, off + take))
            m += take
        if len(parts) == 1:
            return parts[0]
        return _Minutes(*(np.concatenate([getattr(p, f) for p in parts]) for f in _MINUTE_FIELDS))

    def _minute_index(self, ts: int, what: str) -> int:
        if ts < self.config.origin_ns:
            raise SimRangeError(f"{what}={ts} is before the simulation origin {self.config.origin_ns}")
        return (ts - self.config.origin_ns) // NS_PER_MINUTE

    # ------------------------------------------------------------------ bars

    def _bar_arrays(self, start_ns: int, n: int, interval: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Open times (n,) and (n, S) arrays of bars built from whole minutes."""
        iv = interval_ns(interval)
        if iv % NS_PER_MINUTE or start_ns % iv:
            raise SimRangeError(f"start_ns={start_ns} must be a multiple of interval {interval!r} (whole minutes)")
        if n < 0:
            raise SimRangeError(f"n={n} must be >= 0")
        per = iv // NS_PER_MINUTE
        m0 = self._minute_index(start_ns, "start_ns")
        d = self._minutes(m0, m0 + n * per)
        ts = start_ns + np.arange(n, dtype=np.int64) * iv
        if per == 1:
            return ts, {"open": d.open, "high": d.high, "low": d.low, "close": d.close, "volume": d.volume, "trades": d.trades}
        s = len(self._specs)

        def r(a: np.ndarray) -> np.ndarray:
            return a.reshape(n, per, s)

        return ts, {
            "open": r(d.open)[:, 0],
            "high": r(d.high).max(axis=1),
            "low": r(d.low).min(axis=1),
            "close": r(d.close)[:, -1],
            "volume": r(d.volume).sum(axis=1),
            "trades": r(d.trades).sum(axis=1),
        }

    def generate_bars(self, start_ns: int, n: int, interval: str = "1m", symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """``n`` bars per symbol from ``start_ns`` as a polars DataFrame sorted by (symbol, ts).

        Columns: exchange, symbol, interval, ts (Int64 ns, bar open), open, high, low, close, volume
        (Float64, exact multiples of tick/lot size up to float rounding), trades (Int64).
        Intervals below one minute are aggregated from ticks and omit seconds without trades.
        """
        idx = self._symbol_indices(symbols)
        if interval_ns(interval) < NS_PER_MINUTE:
            return self._sub_minute_bars(start_ns, n, interval, idx)
        ts, a = self._bar_arrays(start_ns, n, interval)
        frames = []
        for k in idx:
            tick, lot = self._tick[k], self._lot[k]
            frames.append(
                pl.DataFrame(
                    {
                        "ts": ts,
                        "open": a["open"][:, k] * tick,
                        "high": a["high"][:, k] * tick,
                        "low": a["low"][:, k] * tick,
                        "close": a["close"][:, k] * tick,
                        "volume": a["volume"][:, k] * lot,
                        "trades": a["trades"][:, k],
                    }
                ).with_columns(
                    pl.lit(self.config.exchange).alias("exchange"),
                    pl.lit(self.symbols[k]).alias("symbol"),
                    pl.lit(interval).alias("interval"),
                )
            )
        return pl.concat(frames).select(_BAR_COLUMNS)

    def _sub_minute_bars(self, start_ns: int, n: int, interval: str, idx: list[int]) -> pl.DataFrame:
        iv = interval_ns(interval)
        if start_ns % iv:
            raise SimRangeError(f"start_ns={start_ns} must be a multiple of interval {interval!r}")
        end_ns = start_ns + n * iv
        frames = []
        for k in idx:
            blocks = [self._tick_block(b, k) for b in self._blocks_between(start_ns, end_ns)]
            ts = np.concatenate([b.ts for b in blocks])
            keep = (ts >= start_ns) & (ts < end_ns)
            df = pl.DataFrame(
                {
                    "ts": ts[keep],
                    "price": np.concatenate([b.price for b in blocks])[keep] * self._tick[k],
                    "size": np.concatenate([b.lots for b in blocks])[keep] * self._lot[k],
                }
            )
            frames.append(
                df.group_by((pl.col("ts") // iv) * iv, maintain_order=True)
                .agg(
                    pl.col("price").first().alias("open"),
                    pl.col("price").max().alias("high"),
                    pl.col("price").min().alias("low"),
                    pl.col("price").last().alias("close"),
                    pl.col("size").sum().alias("volume"),
                    pl.len().cast(pl.Int64).alias("trades"),
                )
                .with_columns(
                    pl.lit(self.config.exchange).alias("exchange"),
                    pl.lit(self.symbols[k]).alias("symbol"),
                    pl.lit(interval).alias("interval"),
                )
            )
        return pl.concat(frames).select(_BAR_COLUMNS)

    def bars(self, start_ns: int, n: int, interval: str = "1m") -> Iterator[Bar]:
        """``n`` Bar records per symbol from ``start_ns`` (whole-minute intervals), ordered by (ts, symbol)."""
        ts, a = self._bar_arrays(start_ns, n, interval)
        for i in range(n):
            for k in range(len(self._specs)):
                yield self._bar_record(k, interval, int(ts[i]), a, i)

    def _bar_record(self, k: int, interval: str, ts: int, a: dict[str, np.ndarray], i: int) -> Bar:
        t, lot = self._tick_dec[k], self._lot_dec[k]
        return Bar(
            self.config.exchange, self.symbols[k], interval, ts, ts,
            Decimal(int(a["open"][i, k])) * t, Decimal(int(a["high"][i, k])) * t,
            Decimal(int(a["low"][i, k])) * t, Decimal(int(a["close"][i, k])) * t,
            Decimal(int(a["volume"][i, k])) * lot,
        )  # fmt: skip

    def fetch_bars(self, symbol: str, interval: str, start_ns: int, end_ns: int) -> list[Bar]:
        """Bars of ``symbol`` whose open time is in [start_ns, end_ns) (MarketDataSource batch method)."""
        (k,) = self._symbol_indices([symbol])
        iv = interval_ns(interval)
        first = -(-max(start_ns, self.config.origin_ns) // iv) * iv
        n = max(0, -(-(end_ns - first) // iv))
        ts, a = self._bar_arrays(first, n, interval)
        return [self._bar_record(k, interval, int(ts[i]), a, i) for i in range(n)]

    def _symbol_indices(self, symbols: Sequence[str] | None) -> list[int]:
        if symbols is None:
            return list(range(len(self.symbols)))
        unknown = [s for s in symbols if s not in self.symbols]
        if unknown:
            raise SimRangeError(f"symbols {unknown} are not simulated (have {list(self.symbols)})")
        return [self.symbols.index(s) for s in symbols]

    # ------------------------------------------------------------------ ticks, quotes, books

    def _blocks_between(self, start_ns: int, end_ns: int) -> range:
        m0 = self._minute_index(start_ns, "start_ns")
        m1 = -(-(end_ns - self.config.origin_ns) // NS_PER_MINUTE)
        return range(m0 // TICK_BLOCK_MINUTES, -(-m1 // TICK_BLOCK_MINUTES))

    def _tick_block(self, b: int, k: int) -> _TickBlock:
        key = (b, k)
        if key in self._blocks:
            return self._blocks[key]
        cfg, spec, bm = self.config, self._specs[k], TICK_BLOCK_MINUTES
        m0 = b * bm
        d = self._minutes(m0, m0 + bm)
        rng = np.random.default_rng([cfg.seed, b, 1, k])
        n = d.trades[:, k]
        o, h, lo, c = d.open[:, k], d.high[:, k], d.low[:, k], d.close[:, k]
        total = int(n.sum())
        bar = np.repeat(np.arange(bm), n)
        first = np.cumsum(n) - n
        j = np.arange(total) - first[bar]
        # uniform order statistics within each minute = Poisson arrivals given their count
        frac = np.sort(bar + rng.random(total)) - bar
        ts = cfg.origin_ns + (m0 + bar) * NS_PER_MINUTE + np.minimum((frac * NS_PER_MINUTE).astype(np.int64), NS_PER_MINUTE - 1)
        # the path passes through open (first trade), high, low (two distinct inner trades) and close (last)
        p_high = 1 + (rng.random(bm) * (n - 2)).astype(np.int64)
        p_low = 1 + (rng.random(bm) * (n - 3)).astype(np.int64)
        p_low += p_low >= p_high
        high_first = p_high < p_low
        pa, pb = np.minimum(p_high, p_low), np.maximum(p_high, p_low)
        va, vb = np.where(high_first, h, lo), np.where(high_first, lo, h)
        seg1, seg2 = j <= pa[bar], j <= pb[bar]
        left = np.where(seg1, 0, np.where(seg2, pa[bar], pb[bar]))
        right = np.where(seg1, pa[bar], np.where(seg2, pb[bar], n[bar] - 1))
        lv = np.where(seg1, o[bar], np.where(seg2, va[bar], vb[bar])).astype(float)
        rv = np.where(seg1, va[bar], np.where(seg2, vb[bar], c[bar])).astype(float)
        w = (j - left) / (right - left)
        sd = d.sigma[bar, k] * c[bar] * np.sqrt(w * (1 - w) * (right - left) / (n[bar] - 1))
        price = np.clip(np.rint(lv + w * (rv - lv) + rng.standard_normal(total) * sd), lo[bar], h[bar]).astype(np.int64)
        # sizes: one lot each plus the rest of the minute's volume split by lognormal weights (sums exactly)
        weights = rng.lognormal(0.0, cfg.trade_size_dispersion, total)
        extra = (d.volume[:, k] - n)[bar]
        alloc = np.floor(extra * weights / np.add.reduceat(weights, first)[bar]).astype(np.int64)
        rem = d.volume[:, k] - n - np.add.reduceat(alloc, first)
        lots = 1 + alloc + (j < rem[bar])
        # aggressor by the tick rule (up-tick = buyer lifted the offer); unchanged prices are a coin flip
        step = np.diff(price, prepend=price[0])
        side = np.where(step > 0, 1, np.where(step < 0, -1, np.where(rng.random(total) < 0.5, 1, -1))).astype(np.int8)
        vm = d.vol_mult[bar]
        spread = np.maximum(1, np.rint(spec.spread_bps * 1e-4 * price * vm**cfg.spread_vol_elasticity)).astype(np.int64)
        bid = np.maximum(np.where(side > 0, price - spread, price), 1)
        ask = np.maximum(np.where(side > 0, price, price + spread), bid + 1)
        depth = spec.depth_per_level / float(spec.lot_size) * vm ** -cfg.depth_vol_elasticity
        bid_lots = np.maximum(1, np.rint(depth * rng.lognormal(-0.125, 0.5, total))).astype(np.int64)
        ask_lots = np.maximum(1, np.rint(depth * rng.lognormal(-0.125, 0.5, total))).astype(np.int64)
        blk = _TickBlock(ts, price, lots, side, j, m0 + bar, bid, ask, bid_lots, ask_lots, vm)
        self._blocks[key] = blk
        while len(self._blocks) > 4 * len(self._specs):
            self._blocks.popitem(last=False)
        return blk

    def ticks(self, start_ns: int, end_ns: int) -> Iterator[Tick]:
        """Trades of all symbols with exchange_ts in [start_ns, end_ns), in time order."""
        return self.events(start_ns, end_ns, kinds=("tick",))  # type: ignore[return-value]

    def quotes(self, start_ns: int, end_ns: int) -> Iterator[Quote]:
        """Best bid/offer after each trade, in time order."""
        return self.events(start_ns, end_ns, kinds=("quote",))  # type: ignore[return-value]

    def books(self, start_ns: int, end_ns: int, every: str = "1s") -> Iterator[BookSnapshot]:
        """L2 snapshots of every symbol at multiples of ``every`` in [start_ns, end_ns)."""
        return self.events(start_ns, end_ns, kinds=("book",), book_every=every)  # type: ignore[return-value]

    def events(
        self,
        start_ns: int,
        end_ns: int | None = None,
        *,
        kinds: Sequence[str] = ("tick", "quote"),
        book_every: str = "1s",
        bar_interval: str = "1m",
    ) -> Iterator[Tick | Quote | BookSnapshot | Bar]:
        """Records of the requested kinds ("tick", "quote", "book", "bar") ordered by availability time.

        A bar becomes available when it closes (open + interval), so consumers never see it early;
        ``end_ns=None`` generates forever (for the real-time stream).
        """
        unknown = set(kinds) - {"tick", "quote", "book", "bar"}
        if unknown:
            raise SimRangeError(f"kinds {sorted(unknown)} unknown; use tick, quote, book, bar")
        self._minute_index(start_ns, "start_ns")
        if end_ns is not None and end_ns < start_ns:
            raise SimRangeError(f"end_ns={end_ns} is before start_ns={start_ns}")
        book_ns = interval_ns(book_every)
        bar_ns = interval_ns(bar_interval)
        if "bar" in kinds and bar_ns % NS_PER_MINUTE:
            raise SimRangeError(f"bar_interval={bar_interval!r}: streamed bars must be whole minutes")
        block_ns = TICK_BLOCK_MINUTES * NS_PER_MINUTE
        b = (start_ns - self.config.origin_ns) // block_ns
        while True:
            b0 = self.config.origin_ns + b * block_ns
            lo, hi = max(b0, start_ns), b0 + block_ns if end_ns is None else min(b0 + block_ns, end_ns)
            if hi <= lo:
                return
            yield from self._block_events(b, lo, hi, kinds, book_ns, bar_interval, bar_ns)
            b += 1

    def _block_events(self, b: int, lo: int, hi: int, kinds: Sequence[str], book_ns: int, bar_interval: str, bar_ns: int) -> Iterator:
        # rows of (available_ts, kind rank, symbol, index); bars close before same-time trades
        keys: list[np.ndarray] = []
        blocks = [self._tick_block(b, k) for k in range(len(self._specs))]
        bar_data = None
        for k, blk in enumerate(blocks):
            sel = np.nonzero((blk.ts >= lo) & (blk.ts < hi))[0]
            for rank, kind in ((1, "tick"), (2, "quote")):
                if kind in kinds:
                    keys.append(np.stack([blk.ts[sel], np.full(sel.size, rank), np.full(sel.size, k), sel]))
        if "book" in kinds:
            snaps = np.arange(-(-lo // book_ns) * book_ns, hi, book_ns, dtype=np.int64)
            for k in range(len(blocks)):
                keys.append(np.stack([snaps, np.full(snaps.size, 3), np.full(snaps.size, k), np.arange(snaps.size)]))
        if "bar" in kinds:
            first_open = max(-(-(lo - bar_ns) // bar_ns) * bar_ns, -(-self.config.origin_ns // bar_ns) * bar_ns)
            n_bars = max(0, -(-(hi - bar_ns - first_open) // bar_ns))
            bar_ts, bar_data = self._bar_arrays(first_open, n_bars, bar_interval)
            for k in range(len(blocks)):
                keys.append(np.stack([bar_ts + bar_ns, np.zeros(n_bars, dtype=np.int64), np.full(n_bars, k), np.arange(n_bars)]))
        if not keys:
            return
        allk = np.concatenate(keys, axis=1)
        order = np.lexsort((allk[3], allk[2], allk[1], allk[0]))
        exch, syms = self.config.exchange, self.symbols
        for ts, rank, k, i in allk[:, order].T.tolist():
            blk = blocks[k]
            t, lot = self._tick_dec[k], self._lot_dec[k]
            if rank == 1:
                yield Tick(
                    exch, syms[k], ts, ts, Decimal(int(blk.price[i])) * t, Decimal(int(blk.lots[i])) * lot,
                    AggressorSide.BUY if blk.side[i] > 0 else AggressorSide.SELL, f"{int(blk.minute[i])}-{int(blk.seq[i])}",
                )  # fmt: skip
            elif rank == 2:
                yield Quote(
                    exch, syms[k], ts, ts, Decimal(int(blk.bid[i])) * t, Decimal(int(blk.bid_lots[i])) * lot,
                    Decimal(int(blk.ask[i])) * t, Decimal(int(blk.ask_lots[i])) * lot,
                )  # fmt: skip
            elif rank == 3:
                yield self._book(k, blk, ts, book_ns)
            else:
                yield self._bar_record(k, bar_interval, ts - bar_ns, bar_data, i)  # type: ignore[arg-type]

    def _book(self, k: int, blk: _TickBlock, ts: int, every_ns: int) -> BookSnapshot:
        cfg = self.config
        i = max(int(np.searchsorted(blk.ts, ts, side="right")) - 1, 0)  # the book as left by the last trade
        seq = (ts - cfg.origin_ns) // every_ns
        rng = np.random.default_rng([cfg.seed, seq, 2, k])
        levels = np.arange(cfg.book_levels)
        growth = 1.0 + cfg.depth_level_growth * levels
        base = self._specs[k].depth_per_level / float(self._specs[k].lot_size) * float(blk.vol_mult[i]) ** -cfg.depth_vol_elasticity
        sizes = np.maximum(1, np.rint(base * growth * rng.lognormal(-0.125, 0.5, (2, cfg.book_levels)))).astype(np.int64)
        sizes[0, 0], sizes[1, 0] = blk.bid_lots[i], blk.ask_lots[i]
        bid_px = int(blk.bid[i]) - levels * cfg.level_spacing_ticks
        ask_px = int(blk.ask[i]) + levels * cfg.level_spacing_ticks
        t, lot = self._tick_dec[k], self._lot_dec[k]
        bids = tuple(BookLevel(Decimal(int(p)) * t, Decimal(int(q)) * lot) for p, q in zip(bid_px, sizes[0]) if p > 0)
        asks = tuple(BookLevel(Decimal(int(p)) * t, Decimal(int(q)) * lot) for p, q in zip(ask_px, sizes[1]))
        return BookSnapshot(cfg.exchange, self.symbols[k], ts, ts, bids, asks, int(seq))

    # ------------------------------------------------------------------ MarketDataSource

    async def stream(
        self,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        speed: float | None = 1.0,
        kinds: Sequence[str] = ("tick", "quote"),
        book_every: str = "1s",
        bar_interval: str = "1m",
        now_ns: Callable[[], int] = time.time_ns,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], object] | None = None,
    ) -> AsyncIterator[Tick | Quote | BookSnapshot | Bar]:
        """Records from ``start_ns`` (default: now) paced to ``clock`` at ``speed`` (1.0 = real time).

        ``clock`` (ns) and ``sleep`` (async, seconds) are injectable so tests do not wait.
        """
        from trading.marketdata.replay import Replayer  # replay imports nothing from sim; avoids a cycle

        start = now_ns() if start_ns is None else start_ns
        records = self.events(start, end_ns, kinds=kinds, book_every=book_every, bar_interval=bar_interval)
        replayer = Replayer(records, speed, clock=clock, async_sleep=sleep)
        async for rec in replayer.stream():
            yield rec


_BAR_COLUMNS = ["exchange", "symbol", "interval", "ts", "open", "high", "low", "close", "volume", "trades"]


__all__ = ["DEFAULT_SYMBOLS", "SimConfig", "SimConfigError", "SimRangeError", "SimVenue", "SymbolSpec"]


def anchored_config(seed: int, history_start: str, **overrides) -> SimConfig:
    """The platform's sim market: history begins at `history_start` (YYYY-MM-DD, UTC midnight).

    The historical store and the live stream both build their venue with this, so a backtest on stored
    history and a paper run on the stream see one and the same simulated market.
    """
    from datetime import date

    day = date.fromisoformat(history_start)
    origin_s = (day - date(1970, 1, 1)).days * 86_400
    return SimConfig(seed=seed, origin_ns=origin_s * NS_PER_S, **overrides)
