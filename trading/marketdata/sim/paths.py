"""Price paths: the latent per-minute path of all symbols (volatility factor, regimes, correlated fat-tailed
returns, jumps, activity) drawn in deterministic chunks, and the bars aggregated from it.  Part of SimVenue."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import polars as pl

from trading.marketdata.sim.config import CHUNK_MINUTES, MINUTES_PER_DAY, MIN_TRADES_PER_MINUTE, SimRangeError
from trading.marketdata.timeframes import NS_PER_MINUTE, interval_ns
from trading.records import Bar


@dataclass(slots=True)
class LatentState:
    """Latent state at a chunk boundary: enough to continue the path."""

    x: float  # common log-volatility factor
    regime: int  # 0 calm, 1 volatile
    log_price: np.ndarray  # (S,) unrounded log price
    close: np.ndarray  # (S,) last close in ticks
    flow: np.ndarray  # (S,) order-flow imbalance of the last minute


@dataclass(slots=True)
class Minutes:
    """Per-minute bars of all symbols, prices in ticks and volume in lots; arrays are (M, S)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    sigma: np.ndarray  # per-minute diffusion sd of log price
    vol_mult: np.ndarray  # (M,) volatility relative to baseline
    flow: np.ndarray  # order-flow imbalance of the minute (unit variance): its trades' aggressor side

    def slice(self, a: int, b: int) -> "Minutes":
        return Minutes(*(getattr(self, f)[a:b] for f in MINUTE_FIELDS))


MINUTE_FIELDS = ("open", "high", "low", "close", "volume", "trades", "sigma", "vol_mult", "flow")


def ar1(e: np.ndarray, phi: float, x0: float) -> np.ndarray:
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


BAR_COLUMNS = ["exchange", "symbol", "interval", "ts", "open", "high", "low", "close", "volume", "trades"]


class PricePaths:
    """Latent per-minute path and bars (state lives on SimVenue)."""

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

    def _make_chunk(self, c: int, st: LatentState) -> tuple[Minutes, LatentState]:
        cfg, k, s = self.config, CHUNK_MINUTES, len(self._specs)
        rng = np.random.default_rng([cfg.seed, c, 0])
        regime = self._regimes(rng, st.regime, k)
        phi, vv = cfg.vol_persistence, cfg.vol_of_vol
        x = ar1(rng.standard_normal(k) * (vv * math.sqrt(1 - phi * phi)), phi, st.x)
        # exp(x - vv^2) has mean square 1, so annual_vol is the calm-regime average
        vol_mult = np.exp(x - vv * vv) * np.where(regime == 1, cfg.volatile_vol_multiplier, 1.0)
        nu = cfg.t_dof
        g = rng.standard_normal((k, s)) @ self._chol.T
        # a shared chi-square mixing variable makes a multivariate t: fat tails with the same correlation
        z = g * np.sqrt((nu - 2.0) / rng.chisquare(nu, k))[:, None]
        sigma = self._sigma_min[None, :] * vol_mult[:, None]
        ret = self._drift_min[None, :] - 0.5 * sigma * sigma + sigma * z
        flow = self._flow(c, st.flow)
        if cfg.structure > 0:
            # order flow leads returns: the last minute's imbalance pushes this minute's price (in units of
            # this minute's volatility); flow persists, so returns trend over the following hours
            lead = np.vstack([st.flow[None, :], flow[:-1]])
            ret += (cfg.structure * cfg.flow_impact) * sigma * lead
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
        data = Minutes(open_, high, low, close, volume, trades.astype(np.int64), sigma, vol_mult, flow)
        return data, LatentState(float(x[-1]), int(regime[-1]), log_price[-1].copy(), close[-1].copy(), flow[-1].copy())

    def _flow(self, c: int, start: np.ndarray) -> np.ndarray:
        """(CHUNK_MINUTES, S) order-flow imbalance: AR(1) per symbol with unit stationary variance and
        innovations correlated across symbols like returns (market-wide flow), drawn from its own random
        stream so that the rest of the path is the same with or without structure."""
        cfg, k, s = self.config, CHUNK_MINUTES, len(self._specs)
        if cfg.structure == 0:
            return np.zeros((k, s))
        phi = 0.5 ** (1.0 / cfg.flow_half_life_minutes)
        e = (np.random.default_rng([cfg.seed, c, 2]).standard_normal((k, s)) @ self._chol.T) * math.sqrt(1.0 - phi * phi)
        return np.column_stack([ar1(e[:, j], phi, float(start[j])) for j in range(s)])

    def _chunk(self, c: int) -> Minutes:
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

    def _remember(self, c: int, data: Minutes) -> None:
        self._chunks[c] = data
        while len(self._chunks) > 4:
            self._chunks.popitem(last=False)

    def _minutes(self, m0: int, m1: int) -> Minutes:
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
        return Minutes(*(np.concatenate([getattr(p, f) for p in parts]) for f in MINUTE_FIELDS))

    def _minute_index(self, ts: int, what: str) -> int:
        if ts < self.config.origin_ns:
            raise SimRangeError(f"{what}={ts} is before the simulation origin {self.config.origin_ns}")
        return (ts - self.config.origin_ns) // NS_PER_MINUTE

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
        return pl.concat(frames).select(BAR_COLUMNS)

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
        return pl.concat(frames).select(BAR_COLUMNS)

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
