"""Performance metrics, accumulated chunk by chunk so that memory does not grow with the number of bars.

Returns are per-bar simple returns of the equity curve (the first against the starting cash);
annualisation assumes a 24/7 market (365.25 days a year), the risk-free rate is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

YEAR_NS = 365.25 * 86_400 * 1e9


@dataclass
class EquityStats:
    """Running statistics of an equity curve fed in chunks."""

    start_equity: float
    bar_ns: int
    n: int = 0
    sum_r: float = 0.0
    sum_r2: float = 0.0
    sum_down2: float = 0.0
    last: float = field(init=False)
    peak: float = field(init=False)
    max_dd: float = 0.0
    underwater: int = 0  # bars since the last peak
    max_dd_bars: int = 0
    exposed_bars: int = 0
    first_ts: int | None = None
    last_ts: int | None = None

    def __post_init__(self) -> None:
        self.last = self.peak = self.start_equity

    def update(self, ts: np.ndarray, equity: np.ndarray, exposed: np.ndarray) -> None:
        if len(equity) == 0:
            return
        prev = np.concatenate(([self.last], equity[:-1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(prev > 0, equity / prev - 1.0, 0.0)
        self.sum_r += float(r.sum())
        self.sum_r2 += float((r * r).sum())
        down = np.minimum(r, 0.0)
        self.sum_down2 += float((down * down).sum())
        peaks = np.maximum.accumulate(np.concatenate(([self.peak], equity)))[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.where(peaks > 0, equity / peaks - 1.0, 0.0)
        self.max_dd = min(self.max_dd, float(dd.min()))
        # Longest run below the running peak, continuing the run from the previous chunk.
        at_peak = np.flatnonzero(equity >= peaks)
        bounds = np.concatenate(([-1 - self.underwater], at_peak, [len(equity)]))
        self.max_dd_bars = max(self.max_dd_bars, int((np.diff(bounds) - 1).max()))
        self.underwater = len(equity) - 1 - int(at_peak[-1]) if len(at_peak) else self.underwater + len(equity)
        self.peak = float(peaks[-1])
        self.last = float(equity[-1])
        self.exposed_bars += int(np.count_nonzero(exposed))
        self.n += len(equity)
        if self.first_ts is None:
            self.first_ts = int(ts[0])
        self.last_ts = int(ts[-1])

    def metrics(self) -> dict[str, float | int]:
        n = self.n
        ppy = YEAR_NS / self.bar_ns
        mean = self.sum_r / n if n else 0.0
        var = (self.sum_r2 - n * mean * mean) / (n - 1) if n > 1 else 0.0
        std = math.sqrt(var) if var > 0 else 0.0
        down = math.sqrt(self.sum_down2 / n) if n else 0.0
        total = self.last / self.start_equity - 1.0
        years = n * self.bar_ns / YEAR_NS
        cagr = (self.last / self.start_equity) ** (1.0 / years) - 1.0 if years > 0 and self.last > 0 else -1.0
        return {
            "total_return": total,
            "cagr": cagr,
            "volatility": std * math.sqrt(ppy),
            "sharpe": mean / std * math.sqrt(ppy) if std > 0 else 0.0,
            "sortino": mean / down * math.sqrt(ppy) if down > 0 else 0.0,
            "calmar": cagr / -self.max_dd if self.max_dd < 0 else 0.0,
            "max_drawdown": self.max_dd,
            "max_drawdown_duration_bars": self.max_dd_bars,
            "max_drawdown_duration_s": self.max_dd_bars * self.bar_ns / 1e9,
            "exposure": self.exposed_bars / n if n else 0.0,
            "n_bars": n,
            "final_equity_curve": self.last,
        }


def trade_metrics(pnls: list[float]) -> dict[str, float]:
    wins = [p for p in pnls if p > 0]
    losses = [-p for p in pnls if p < 0]
    gross_loss = sum(losses)
    return {
        "win_rate": len(wins) / len(pnls) if pnls else 0.0,
        "profit_factor": (sum(wins) / gross_loss if gross_loss > 0 else (math.inf if wins else 0.0)),
    }
