"""Pure cleaning of an OHLCV polars DataFrame: duplicates, bad rows, unconfirmed jumps, gaps.

Input columns: exchange, symbol, interval (str), ts, open, high, low, close, volume; extra columns are
kept. ``ts`` is Int64 nanoseconds since the epoch (UTC), the bar's open time, like ``Bar.exchange_ts``;
a polars Datetime column is accepted and converted to that.

Nothing is dropped silently: exact duplicate rows are dropped and counted; every other removed row
goes to ``quarantine`` with a ``reason``; missing intervals are listed in ``gaps``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import polars as pl

from trading.marketdata.timeframes import IntervalError, interval_ns

KEY = ["exchange", "symbol", "interval", "ts"]
PARTITION = ["exchange", "symbol", "interval"]
PRICES = ["open", "high", "low", "close"]
REQUIRED = KEY + PRICES + ["volume"]

# Quarantine reasons, in the order they are checked (a row gets the first that applies).
CONFLICTING_DUPLICATE = "conflicting_duplicate"  # same key, different values: we cannot know which is right
MISSING = "missing"  # a null in a required column
NOT_FINITE = "not_finite"  # NaN or infinity
BAD_INTERVAL = "bad_interval"
MISALIGNED_TS = "misaligned_ts"  # ts not a multiple of the interval
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_VOLUME = "negative_volume"
OHLC_INCONSISTENT = "ohlc_inconsistent"
UNCONFIRMED_JUMP = "unconfirmed_jump"  # close jumped > N robust sigmas on ordinary volume
UNCONFIRMED_WICK = "unconfirmed_wick"  # high/low poke > N robust sigmas out of the body on ordinary volume
DUPLICATE = "duplicate"  # exact duplicate row: dropped (counted, not quarantined)

_MAD_TO_SIGMA = 1.4826  # sigma of a normal = 1.4826 * its median absolute deviation


class QualitySchemaError(ValueError):
    """The frame lacks a required column or has one of an unusable type."""


@dataclass(frozen=True)
class QualityConfig:
    """Outlier detection settings."""

    jump_sigmas: float = 10.0
    """A close-to-close move (or a wick) beyond this many robust sigmas is a jump candidate."""
    sigma_window: int = 240
    """Trailing rows used for the robust sigma (median absolute log return * 1.4826)."""
    volume_window: int = 60
    """Trailing rows used for the typical (median) volume."""
    min_periods: int = 20
    """Fewer trailing rows than this: use the whole partition's median instead."""
    volume_confirm_ratio: float = 2.5
    """A jump is confirmed (kept) when its volume is at least this multiple of the typical volume."""


@dataclass(frozen=True)
class QualityResult:
    clean: pl.DataFrame
    """Valid rows sorted by key, ts as Int64 ns."""
    quarantine: pl.DataFrame
    """Removed rows (input columns) plus ``reason``."""
    gaps: pl.DataFrame
    """exchange, symbol, interval, gap_start, gap_end (exclusive, ns), missing (intervals) of ``clean``."""
    counts: Counter[str]
    """Rows removed by reason (``duplicate`` = exact duplicates dropped)."""


def _prepare(df: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise QualitySchemaError(f"OHLCV frame lacks columns {missing}; need {REQUIRED}")
    ts_type = df.schema["ts"]
    if isinstance(ts_type, pl.Datetime):
        ts = pl.col("ts").dt.replace_time_zone(None).dt.epoch("ns") if ts_type.time_zone else pl.col("ts").dt.epoch("ns")
    elif ts_type.is_integer():
        ts = pl.col("ts").cast(pl.Int64)
    else:
        raise QualitySchemaError(f"column ts has type {ts_type}; want Int64 ns since the epoch or Datetime")
    for c in PRICES + ["volume"]:
        if not df.schema[c].is_numeric():
            raise QualitySchemaError(f"column {c} has type {df.schema[c]}; want a number")
    return df.with_columns(ts, *(pl.col(c).cast(pl.Float64) for c in PRICES + ["volume"]))


def clean_ohlcv(df: pl.DataFrame, config: QualityConfig | None = None) -> QualityResult:
    """Split ``df`` into clean rows, quarantined rows (with reasons) and the gaps of the clean series."""
    cfg = config or QualityConfig()
    df = _prepare(df)
    columns = df.columns
    counts: Counter[str] = Counter()

    exact_dupe = ~pl.struct(columns).is_first_distinct()
    n_before = df.height
    df = df.filter(~exact_dupe)
    counts[DUPLICATE] = n_before - df.height

    intervals = {}
    for iv in df["interval"].drop_nulls().unique().to_list():
        try:
            intervals[iv] = interval_ns(iv)
        except IntervalError:
            intervals[iv] = None
    iv_ns = pl.col("interval").replace_strict(intervals, default=None, return_dtype=pl.Int64)
    values = PRICES + ["volume"]
    reason = (
        pl.when(pl.struct(KEY).is_duplicated()).then(pl.lit(CONFLICTING_DUPLICATE))
        .when(pl.any_horizontal(pl.col(REQUIRED).is_null())).then(pl.lit(MISSING))
        .when(~pl.all_horizontal(pl.col(values).is_finite())).then(pl.lit(NOT_FINITE))
        .when(iv_ns.is_null()).then(pl.lit(BAD_INTERVAL))
        .when(pl.col("ts") % iv_ns != 0).then(pl.lit(MISALIGNED_TS))
        .when(pl.any_horizontal(pl.col(PRICES) <= 0)).then(pl.lit(NON_POSITIVE_PRICE))
        .when(pl.col("volume") < 0).then(pl.lit(NEGATIVE_VOLUME))
        .when(
            (pl.col("low") > pl.min_horizontal("open", "close"))
            | (pl.col("high") < pl.max_horizontal("open", "close"))
        ).then(pl.lit(OHLC_INCONSISTENT))
        .otherwise(pl.lit(None, dtype=pl.String))
    )  # fmt: skip
    df = df.with_columns(reason.alias("reason"), iv_ns.alias("_iv"))
    bad = df.filter(pl.col("reason").is_not_null())
    good = _flag_jumps(df.filter(pl.col("reason").is_null()).sort(KEY), cfg)
    quarantine = pl.concat([bad.select(columns + ["reason"]), good.filter(pl.col("reason").is_not_null()).select(columns + ["reason"])])
    clean = good.filter(pl.col("reason").is_null())
    counts.update(dict(quarantine["reason"].value_counts().iter_rows()))
    return QualityResult(clean.select(columns), quarantine, _gaps(clean), +counts)


def _flag_jumps(df: pl.DataFrame, cfg: QualityConfig) -> pl.DataFrame:
    k = cfg.jump_sigmas
    over = {"partition_by": PARTITION}
    steps = ((pl.col("ts") - pl.col("ts").shift(1)) / pl.col("_iv")).over(**over)
    r = pl.col("close").log() - pl.col("close").log().shift(1).over(**over)
    df = df.with_columns(r.alias("_r"), steps.alias("_steps"))
    # per-interval scale: a move across a gap of n intervals is compared with sqrt(n) sigmas
    norm = (pl.col("_r").abs() / pl.col("_steps").sqrt()).alias("_absr")
    df = df.with_columns(norm)
    sigma = pl.coalesce(
        pl.col("_absr").rolling_median(cfg.sigma_window, min_samples=cfg.min_periods).shift(1).over(**over),
        pl.col("_absr").median().over(**over),
    ) * _MAD_TO_SIGMA
    typical_volume = pl.coalesce(
        pl.col("volume").rolling_median(cfg.volume_window, min_samples=cfg.min_periods).shift(1).over(**over),
        pl.col("volume").median().over(**over),
    )
    df = df.with_columns(sigma.alias("_sigma"), (pl.col("volume") >= cfg.volume_confirm_ratio * typical_volume).alias("_confirmed"))
    limit = k * pl.col("_sigma") * pl.col("_steps").sqrt()
    big = (pl.col("_r").abs() > limit) & (pl.col("_sigma") > 0)
    prev_r = pl.col("_r").shift(1).over(**over)
    # the move back after a spike is not a second outlier: it restores the level before the spike
    reverts = big.shift(1).over(**over).fill_null(False) & (pl.col("_r").sign() != prev_r.sign()) & ((pl.col("_r") + prev_r).abs() <= limit)
    wick = pl.max_horizontal(
        (pl.col("high") / pl.max_horizontal("open", "close")).log(),
        (pl.min_horizontal("open", "close") / pl.col("low")).log(),
    ) > k * pl.col("_sigma")
    jump = (big.fill_null(False) & ~reverts & ~pl.col("_confirmed")).fill_null(False)
    wick_out = (wick & (pl.col("_sigma") > 0) & ~pl.col("_confirmed")).fill_null(False)
    return df.with_columns(
        pl.when(jump).then(pl.lit(UNCONFIRMED_JUMP)).when(wick_out).then(pl.lit(UNCONFIRMED_WICK))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("reason")
    )  # fmt: skip


def _gaps(clean: pl.DataFrame) -> pl.DataFrame:
    nxt = pl.col("ts").shift(-1).over(partition_by=PARTITION)
    return (
        clean.with_columns(nxt.alias("_next"))
        .filter(pl.col("_next") - pl.col("ts") > pl.col("_iv"))
        .select(
            *PARTITION,
            (pl.col("ts") + pl.col("_iv")).alias("gap_start"),
            pl.col("_next").alias("gap_end"),
            ((pl.col("_next") - pl.col("ts")) // pl.col("_iv") - 1).alias("missing"),
        )
    )
