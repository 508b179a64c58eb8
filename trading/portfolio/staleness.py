"""How old the target weights that trade now are, and when that is too old.

Weights of day D are computed from D's close, so they exist only once D is over: their age is measured
from the end of D (midnight UTC starting D+1), not from D's start. Fresh weights are therefore between 0
and ~24 hours old (plus the daily job's delay); ``max_age_hours`` says how much more is tolerated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from trading.portfolio.errors import PortfolioError


def weights_age_hours(as_of: date | None, now: datetime) -> float:
    """Hours since the end of day ``as_of`` (UTC); inf when there are no weights at all."""
    if as_of is None:
        return math.inf
    if now.tzinfo is None:
        raise PortfolioError("weights_age_hours needs a timezone-aware 'now'")
    end = datetime.combine(as_of + timedelta(days=1), time.min, timezone.utc)
    return (now - end).total_seconds() / 3600.0


@dataclass(frozen=True)
class Staleness:
    portfolio: str
    as_of: date | None
    age_hours: float
    max_age_hours: float

    @property
    def stale(self) -> bool:
        return self.age_hours > self.max_age_hours

    @property
    def reason(self) -> str:
        if self.as_of is None:
            return f"portfolio {self.portfolio!r} has no target weights"
        verdict = "older than" if self.stale else "within"
        return (f"target weights of {self.portfolio!r} are as of {self.as_of}: {self.age_hours:.1f} h since that "
                f"day ended, {verdict} the {self.max_age_hours:g} h allowed")


def staleness(portfolio: str, as_of: date | None, now: datetime, max_age_hours: float) -> Staleness:
    if not (math.isfinite(max_age_hours) and max_age_hours > 0):
        raise PortfolioError(f"max_age_hours must be a finite number > 0, got {max_age_hours}")
    return Staleness(portfolio, as_of, weights_age_hours(as_of, now), float(max_age_hours))
