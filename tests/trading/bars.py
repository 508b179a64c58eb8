"""Seeded bar data shared by the strategy, backtest and CLI tests (helpers; the `bars` fixture is in the
conftest of the folders that use it)."""

from __future__ import annotations

import numpy as np
import polars as pl

from trading.backtest.data import validate_bars

T0 = 1_704_067_200_000_000_000  # 2024-01-01 UTC, ns
MINUTE = 60_000_000_000


def random_bars(n: int, seed: int = 0, symbol: str = "BTC/USDT", start: float = 30_000.0, vol: float = 0.002) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(start * np.exp(np.cumsum(rng.normal(0, vol, n))), 2)
    open_ = np.concatenate(([start], close[:-1]))
    w = np.round(np.abs(rng.normal(0, start * vol / 2, (2, n))), 2)
    frame = pl.DataFrame({
        "timestamp": T0 + MINUTE * np.arange(n, dtype=np.int64),
        "open": open_, "high": np.maximum(open_, close) + w[0], "low": np.minimum(open_, close) - w[1],
        "close": close, "volume": np.round(rng.uniform(1, 20, n), 3),
    })
    return validate_bars(frame, symbol)


def write_bars_file(tmp_path, frame, name="bars.csv"):
    """Write ``frame`` as CSV or Parquet (by the name's suffix) and return the path."""
    path = tmp_path / name
    (frame.write_parquet if name.endswith(".parquet") else frame.write_csv)(path)
    return path


def plain_bars(n=400, seed=2):
    """Single-symbol bars as a user's file holds them (no symbol column)."""
    return random_bars(n, seed=seed).drop("symbol")
