"""Shared helpers of the ML tests: sim bars, a real MLflow (sqlite store in tmp), clean bars in Postgres."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from trading.marketdata.sim import SimConfig, SimVenue
from trading.records import Bar

ORIGIN = datetime(2026, 11, 1, tzinfo=timezone.utc)
ORIGIN_NS = int(ORIGIN.timestamp()) * 1_000_000_000
SMALL_FEATURES = dict(cross_window=20, regime_window=200, regime_min_fit=60, regime_refit="2h")


def sim_bars(n: int, seed: int = 11, exchange: str = "sim") -> pl.DataFrame:
    venue = SimVenue(SimConfig(seed=seed, origin_ns=ORIGIN_NS, exchange=exchange))
    return venue.generate_bars(ORIGIN_NS, n)


def as_records(bars: pl.DataFrame) -> list[Bar]:
    """The same floats as Bar records (Decimal(repr(x)) round-trips exactly), in stream order (ts, symbol)."""
    rows = sorted(bars.iter_rows(named=True), key=lambda r: (r["ts"], r["symbol"]))
    return [Bar(r["exchange"], r["symbol"], "1m", r["ts"], r["ts"],
                *[Decimal(repr(float(r[k]))) for k in ("open", "high", "low", "close", "volume")]) for r in rows]


@pytest.fixture()
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def write_clean_bars(engine, bars: pl.DataFrame) -> None:
    import sqlalchemy as sa

    from trading.records import stable_id

    rows = [{"e": r["exchange"], "s": r["symbol"], "ts": datetime.fromtimestamp(r["ts"] / 1e9, tz=timezone.utc),
             "o": r["open"], "h": r["high"], "l": r["low"], "c": r["close"], "v": r["volume"],
             "id": stable_id("bar", r["exchange"], r["symbol"], "1m", r["ts"])}
            for r in bars.iter_rows(named=True)]
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            VALUES (:e, :s, '1m', :ts, :o, :h, :l, :c, :v, :id) ON CONFLICT DO NOTHING"""), rows)


def nan_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def store_champion_features(engine, ml, rows: list[tuple[str, datetime, dict]], metrics: dict,
                            version: str = "1") -> None:
    """``rows`` (symbol, ts, feature dict) as ``ml``'s stored features, and ``version`` recorded as champion
    with ``metrics`` (its training window): what a retrain leaves behind. ON CONFLICT: reruns add nothing."""
    import json

    import sqlalchemy as sa

    from ml.features import FEATURE_NAMES, FEATURE_SET_VERSION
    from storage.ml import record_model

    with engine.begin() as conn:
        conn.execute(sa.text("""INSERT INTO ml_feature_sets (feature_set, version, names, params, symbols)
                                VALUES (:fs, :ver, CAST(:n AS jsonb), '{}'::jsonb, '[]'::jsonb)
                                ON CONFLICT (feature_set) DO NOTHING"""),
                     {"fs": ml.feature_set(), "ver": FEATURE_SET_VERSION, "n": json.dumps(FEATURE_NAMES)})
        conn.execute(sa.text("""INSERT INTO ml_features (feature_set, exchange, symbol, ts, vals)
                                VALUES (:fs, :e, :s, :ts, CAST(:v AS jsonb)) ON CONFLICT DO NOTHING"""),
                     [{"fs": ml.feature_set(), "e": ml.exchange, "s": s, "ts": ts, "v": json.dumps(v)}
                      for s, ts, v in rows])
        record_model(conn, ml.model_name, version, f"run-{version}", "fs=x", "champion", metrics)
