"""Fixtures of the backtest tests."""

from __future__ import annotations

import polars as pl
import pytest

from tests.trading.bars import random_bars


@pytest.fixture
def bars() -> pl.DataFrame:
    return random_bars(3000, seed=1)
