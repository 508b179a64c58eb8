"""Age of stored weights, measured from the end of their day."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest

from trading.portfolio.errors import PortfolioError
from trading.portfolio.staleness import staleness, weights_age_hours


def test_age_counts_from_the_end_of_the_weights_day():
    at = datetime(2026, 11, 22, 6, 30, tzinfo=timezone.utc)
    assert weights_age_hours(date(2026, 11, 21), at) == 6.5  # computed from the 21st's close: fresh
    assert weights_age_hours(date(2026, 11, 20), at) == 30.5
    assert weights_age_hours(None, at) == math.inf


def test_stale_beyond_the_allowance_and_why():
    at = datetime(2026, 11, 22, 6, 30, tzinfo=timezone.utc)
    ok, old = staleness("main", date(2026, 11, 21), at, 26), staleness("main", date(2026, 11, 20), at, 26)
    assert not ok.stale and old.stale
    assert old.reason == ("target weights of 'main' are as of 2026-11-20: 30.5 h since that day ended, older "
                          "than the 26 h allowed")
    none = staleness("main", None, at, 26)
    assert none.stale and none.reason == "portfolio 'main' has no target weights"


def test_bad_inputs_are_refused():
    with pytest.raises(PortfolioError, match="timezone-aware"):
        weights_age_hours(date(2026, 11, 21), datetime(2026, 11, 22))
    with pytest.raises(PortfolioError, match="max_age_hours must be a finite number > 0"):
        staleness("main", None, datetime.now(timezone.utc), 0)
