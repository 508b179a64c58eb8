"""VaR return scenarios for the worker's risk engine, from the clean market-data layer.

The risk engine wants a T x N matrix of 1-day simple returns (trading/risk: it scales by sqrt(horizon)).
``step`` chooses how they are sampled from ``market_data_clean`` (the query: storage.market_data.scenario_closes):

* ``1d``: the close of each UTC day over the close of the day before (non-overlapping; needs ~months of
  history for a few dozen scenarios);
* ``1h``: the close of each hour over the close 24 hours earlier -- still 1-day returns, but overlapping,
  so a short history gives 24x more (autocorrelated) scenarios.  Honest about what it is in ``info``.

A return is only taken between two buckets exactly one day apart (a gap never becomes a 2-day return),
and a scenario row is a bucket where every loaded symbol has a return (the engine needs joint moves).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import numpy as np

STEPS = {"1d": timedelta(days=1), "1h": timedelta(hours=1)}
DAY = timedelta(days=1)


class ScenarioConfigError(ValueError):
    """A scenario setting that cannot work (unknown step, non-positive count)."""


def check_config(step: str, count: int, min_count: int) -> None:
    if step not in STEPS:
        raise ScenarioConfigError(f"var scenario step {step!r} unknown; expected one of {sorted(STEPS)}")
    if count < 2 or min_count < 2 or min_count > count:
        raise ScenarioConfigError(f"var scenarios: need 2 <= min_count ({min_count}) <= count ({count})")


def build(rows: Iterable[Sequence[Any]], symbols: Sequence[str], *, step: str, count: int, min_count: int,
          exchange: str, interval: str) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """(symbols with scenarios, T x N returns, info) from (symbol, bucket, close) rows.  With no usable
    history the symbol list is empty and ``info["error"]`` says, in one line, what is missing."""
    check_config(step, count, min_count)
    closes: dict[str, dict[datetime, float]] = {s: {} for s in symbols}
    for sym, bucket, close in rows:
        if sym in closes:
            closes[sym][bucket] = float(close)
    rets: dict[str, dict[datetime, float]] = {}
    for sym, by_b in closes.items():
        r = {b: c / by_b[b - DAY] - 1.0 for b, c in by_b.items() if (b - DAY) in by_b and by_b[b - DAY] > 0}
        if r:
            rets[sym] = r
    missing = [s for s in symbols if s not in rets]
    where = f"(exchange {exchange!r}, interval {interval!r})"
    info: dict[str, Any] = {"loaded": False, "step": step, "exchange": exchange, "interval": interval,
                            "symbols": [], "missing": missing, "count": 0}
    if not rets:
        info["error"] = f"no scenarios: market_data_clean has no history for {', '.join(missing)} {where}"
        return [], np.empty((0, 0)), info
    have = sorted(rets)
    common = sorted(set.intersection(*(set(rets[s]) for s in have)))[-count:]
    if len(common) < min_count:
        info["error"] = (f"no scenarios: market_data_clean gives only {len(common)} common 1-day returns of "
                         f"{', '.join(have)} {where}, need {min_count}"
                         + (f"; no history at all for {', '.join(missing)}" if missing else ""))
        return [], np.empty((0, 0)), info
    matrix = np.array([[rets[s][b] for s in have] for b in common], dtype=float)
    info.update(loaded=True, symbols=have, count=len(common), first=common[0].isoformat(), last=common[-1].isoformat(),
                overlapping=step != "1d", error=None,
                note=(f"no history for {', '.join(missing)}: VaR fails while the account holds them"
                      if missing else None))
    return have, matrix, info


def window_seconds(step: str, count: int) -> int:
    """Seconds of history covering ``count`` returns of ``step`` plus the day each return looks back over."""
    return int((STEPS[step] * (count + 1) + DAY).total_seconds())


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
