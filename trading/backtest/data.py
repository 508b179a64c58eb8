"""Load and validate OHLCV bars for backtests (CSV or Parquet), or generate them from the sim market.

Required columns: timestamp, open, high, low, close, volume (an optional ``symbol`` column makes the
file multi-symbol).  ``timestamp`` may be:

* ISO-8601 strings ("2024-01-01T00:00:00Z", "2024-01-01 00:00:00+01:00"; no offset means UTC),
* epoch seconds (numbers below 1e11, fractions allowed),
* epoch milliseconds (numbers from 1e11 up to 1e14; beyond that microseconds up to 1e17, then
  nanoseconds -- the unit is chosen from the largest value, so one file uses one unit),
* or a native date-time column (Parquet timestamps; naive means UTC).

The result is sorted by (timestamp, symbol) with timestamp as Int64 ns since the epoch, prices and
volume as Float64.  Anything doubtful -- missing file or column, unparseable timestamp, NaN or null,
non-positive price, inconsistent high/low, negative volume, unsorted or duplicate timestamps --
raises ``DataError`` naming the column and the row, rather than being guessed at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from trading.marketdata.timeframes import interval_label

REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
DEFAULT_SYMBOL = "ASSET/USD"


class DataError(ValueError):
    """Bar data that cannot be backtested as given."""


def load_bars(path: str | Path, symbol: str | None = None) -> pl.DataFrame:
    """Read a CSV or Parquet file of bars and validate it (see module doc).

    Without a ``symbol`` column every row belongs to ``symbol`` (default ``ASSET/USD``); with one,
    ``symbol`` selects that symbol's rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pl.read_csv(path, infer_schema_length=10_000)
        elif suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            raise DataError(f"data file {path} must be .csv or .parquet, got {suffix or 'no extension'!r}")
    except DataError:
        raise
    except Exception as e:  # polars raises many kinds; all mean "unreadable file"
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return validate_bars(frame, symbol, source=str(path))


def validate_bars(frame: pl.DataFrame, symbol: str | None = None, source: str = "data") -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"{source} is missing column(s): {', '.join(missing)} (need {', '.join(REQUIRED)})")
    if "symbol" in frame.columns:
        if symbol is not None:
            frame = frame.filter(pl.col("symbol") == symbol)
            if frame.height == 0:
                raise DataError(f"{source} has no rows for symbol {symbol!r}")
        frame = frame.with_columns(pl.col("symbol").cast(pl.String))
    else:
        frame = frame.with_columns(pl.lit(symbol or DEFAULT_SYMBOL).alias("symbol"))
    if frame.height == 0:
        raise DataError(f"{source} has no bars")
    if frame["symbol"].null_count():
        raise DataError(f"{source}: column symbol is empty at row {_first(frame['symbol'].is_null())}")
    ts = parse_timestamps(frame["timestamp"], source)
    cols = {"timestamp": ts, "symbol": frame["symbol"]}
    for name in PRICES + ("volume",):
        cols[name] = _numeric(frame[name], name, source)
    out = pl.DataFrame(cols)
    _check_values(out, source)
    _check_order(out, source)
    if out["symbol"].n_unique() > 1:
        out = out.sort(["timestamp", "symbol"], maintain_order=True)
    return out


def _first(mask: pl.Series | np.ndarray) -> int:
    arr = mask.to_numpy() if isinstance(mask, pl.Series) else mask
    return int(np.flatnonzero(arr)[0])


def _numeric(s: pl.Series, name: str, source: str) -> pl.Series:
    if s.dtype == pl.String:
        parsed = s.str.strip_chars().cast(pl.Float64, strict=False)
        bad = parsed.is_null() & s.is_not_null()
        if bad.any():
            row = _first(bad)
            raise DataError(f"{source}: column {name} has a non-number {s[row]!r} at row {row}")
        s = parsed
    elif not s.dtype.is_numeric():
        raise DataError(f"{source}: column {name} must be numeric, got {s.dtype}")
    s = s.cast(pl.Float64)
    if s.null_count():
        raise DataError(f"{source}: column {name} is empty (null) at row {_first(s.is_null())}")
    bad = ~s.is_finite()
    if bad.any():
        row = _first(bad)
        raise DataError(f"{source}: column {name} has {s[row]} at row {row}")
    return s.alias(name)


def parse_timestamps(s: pl.Series, source: str = "data") -> pl.Series:
    """Timestamps (see module doc) -> Int64 ns since the epoch, UTC."""
    if s.null_count():
        raise DataError(f"{source}: column timestamp is empty (null) at row {_first(s.is_null())}")
    if isinstance(s.dtype, pl.Datetime):
        if s.dtype.time_zone is None:
            s = s.dt.replace_time_zone("UTC")
        return s.dt.epoch("ns").alias("timestamp")
    if s.dtype == pl.Date:
        return s.cast(pl.Datetime("ns")).dt.epoch("ns").alias("timestamp")
    if s.dtype == pl.String:
        numeric = s.str.strip_chars().cast(pl.Float64, strict=False)
        if numeric.null_count() == 0:
            return _epoch(numeric, source)
        try:
            parsed = s.str.strip_chars().str.to_datetime(time_unit="ns", time_zone="UTC", strict=False)
        except Exception:  # no single format fits the column
            parsed = pl.Series([None] * len(s), dtype=pl.Datetime("ns", "UTC"))
        if parsed.null_count():
            row = _first(parsed.is_null())
            raise DataError(f"{source}: timestamp {s[row]!r} at row {row} is not ISO-8601 (or mixes formats with earlier rows)")
        return parsed.dt.epoch("ns").alias("timestamp")
    if s.dtype.is_numeric():
        return _epoch(s.cast(pl.Float64) if s.dtype.is_float() else s, source)
    raise DataError(f"{source}: column timestamp has unsupported type {s.dtype}")


def _epoch(s: pl.Series, source: str) -> pl.Series:
    if s.dtype.is_float():
        bad = ~s.is_finite()
        if bad.any():
            row = _first(bad)
            raise DataError(f"{source}: timestamp {s[row]} at row {row} is not a number")
    neg = s < 0
    if neg.any():
        row = _first(neg)
        raise DataError(f"{source}: timestamp {s[row]} at row {row} is negative")
    top = s.max()
    if top < 1e11:
        scale = 1_000_000_000  # seconds
    elif top < 1e14:
        scale = 1_000_000  # milliseconds
    elif top < 1e17:
        scale = 1_000  # microseconds
    else:
        scale = 1  # nanoseconds (what our own frames carry)
    ns = (s * scale).round(0).cast(pl.Int64) if s.dtype.is_float() else s.cast(pl.Int64) * scale
    return ns.alias("timestamp")


def _check_values(f: pl.DataFrame, source: str) -> None:
    # Polars expressions (bit-packed masks) rather than numpy temporaries: memory stays small.
    o, h, lo, c = (pl.col(k) for k in PRICES)
    checks = [(pl.col(name) <= 0, name) for name in PRICES] + [
        (pl.col("volume") < 0, "volume"),
        (h < lo, "high is below low"),
        (h < pl.max_horizontal(o, c), "high is below open or close"),
        (lo > pl.min_horizontal(o, c), "low is above open or close"),
    ]
    found = f.select([m.arg_true().first().alias(str(i)) for i, (m, _) in enumerate(checks)]).row(0)
    for row, (_, what) in zip(found, checks):
        if row is None:
            continue
        if what in PRICES:
            raise DataError(f"{source}: column {what} has non-positive price {f[what][row]} at row {row}")
        if what == "volume":
            raise DataError(f"{source}: column volume is negative ({f['volume'][row]}) at row {row}")
        raise DataError(f"{source}: {what} at row {row}")


def _check_order(f: pl.DataFrame, source: str) -> None:
    d = f.select(
        pl.col("timestamp").diff().over("symbol").alias("d"), pl.col("symbol")
    ) if f["symbol"].n_unique() > 1 else f.select(pl.col("timestamp").diff().alias("d"), pl.col("symbol"))
    for mask, what in ((d["d"] < 0, "timestamps are not sorted"), (d["d"] == 0, "duplicate timestamp")):
        if mask.any():
            row = _first(mask.fill_null(False))
            ts = f["timestamp"][row]
            detail = "" if what.startswith("timestamps") else f" {ts}"
            raise DataError(f"{source}: {what}{detail} at row {row} ({f['symbol'][row]})")


def infer_interval(frame: pl.DataFrame) -> str:
    """Bar interval label ("1m", "1h", ...) from the most common spacing of the first symbol's bars."""
    first = frame["symbol"][0]
    ts = frame.filter(pl.col("symbol") == first)["timestamp"].to_numpy() if frame["symbol"].n_unique() > 1 else frame["timestamp"].to_numpy()
    if len(ts) < 2:
        return "1m"
    d = np.diff(ts[: 100_001])
    values, counts = np.unique(d, return_counts=True)
    try:
        return interval_label(int(values[np.argmax(counts)]))
    except ValueError as e:
        raise DataError(str(e)) from None


def load_sim_bars(symbol: str = "BTC/USDT", n_bars: int = 10_000, seed: int = 7, interval: str = "1m") -> pl.DataFrame:
    """``n_bars`` bars of ``symbol`` from the seeded simulated market (``trading.marketdata.sim``)."""
    try:
        from trading.marketdata.sim import SimConfig, SimVenue  # lazily: only this path needs it
    except ImportError as e:
        raise DataError(f"no --data given and the simulated market is unavailable ({e})") from None
    venue = SimVenue(SimConfig(seed=seed))
    names = [i.symbol for i in venue.instruments()]
    if symbol not in names:
        raise DataError(f"the sim market has no symbol {symbol!r} (available: {', '.join(names)})")
    if n_bars < 1:
        raise DataError(f"number of sim bars must be >= 1, got {n_bars}")
    frame = venue.generate_bars(venue.config.origin_ns, n_bars, interval, symbols=[symbol])
    frame = frame.rename({"ts": "timestamp"}).select(REQUIRED + ("symbol",))
    return validate_bars(frame, symbol, source="sim")


def sim_instruments(seed: int = 7) -> dict:
    """Instrument rules (tick/lot sizes) of the sim market's symbols."""
    from trading.marketdata.sim import SimConfig, SimVenue

    return {i.symbol: i for i in SimVenue(SimConfig(seed=seed)).instruments()}
