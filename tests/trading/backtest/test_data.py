"""Bar loading: formats, and validation errors that name the problem."""

from __future__ import annotations

import polars as pl
import pytest

from trading.backtest.data import DataError, load_bars

from tests.trading.bars import T0, plain_bars as _plain, write_bars_file as _write


@pytest.mark.parametrize("unit", ["iso", "s", "ms", "datetime"])
def test_timestamp_formats_load_to_the_same_ns(tmp_path, unit):
    f = _plain(5)
    ns = f["timestamp"]
    col = {
        "iso": pl.from_epoch(ns, "ns").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "s": ns // 1_000_000_000,
        "ms": ns // 1_000_000,
        "datetime": pl.from_epoch(ns, "ns"),
    }[unit]
    path = _write(tmp_path, f.with_columns(col.alias("timestamp")), "b.parquet" if unit == "datetime" else "b.csv")
    got = load_bars(path, "X/USD")
    assert got["timestamp"].to_list() == ns.to_list() and got["symbol"][0] == "X/USD"


def test_iso_with_offsets_and_multi_symbol_file(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("timestamp,symbol,open,high,low,close,volume\n"
                   "2024-01-01T01:00:00+01:00,A/USD,1,2,1,2,5\n"
                   "2024-01-01T00:00:00Z,B/USD,3,3,2,2,5\n"
                   "2024-01-01T00:01:00Z,A/USD,2,2,1,1,5\n")
    got = load_bars(csv)
    assert got["symbol"].to_list() == ["A/USD", "B/USD", "A/USD"]  # sorted by (timestamp, symbol)
    assert got["timestamp"].to_list() == [T0, T0, T0 + 60_000_000_000]
    assert load_bars(csv, "B/USD").height == 1


BAD = [
    (lambda f: f.drop("volume"), "missing column(s): volume"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(float("nan")).otherwise(pl.col("close")).alias("close")), "column close has nan at row 7"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("low")).alias("low")), "column low has non-positive price -1.0 at row 3"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(None).otherwise(pl.col("open")).alias("open")), "column open is empty (null) at row 9"),
    (lambda f: pl.concat([f.slice(0, 5), f.slice(6, 1), f.slice(5, 1), f.slice(7)]), "timestamps are not sorted at row 6"),
    (lambda f: pl.concat([f.slice(0, 5), f.slice(4)]), "duplicate timestamp"),
    (lambda f: f.with_columns(pl.col("timestamp").cast(pl.String).str.replace("^17", "x")), "timestamp 'x"),
    (lambda f: f.with_columns((pl.col("low") - 1000).alias("high")), "high is below low at row 0"),
    (lambda f: f.with_columns(pl.lit(-1.0).alias("volume")), "column volume is negative"),
]


@pytest.mark.parametrize("mutate,message", BAD, ids=[m for _, m in BAD])
def test_bad_data_is_rejected_with_a_named_problem(tmp_path, mutate, message):
    path = _write(tmp_path, mutate(_plain(20)), "bad.csv")
    with pytest.raises(DataError) as e:
        load_bars(path)
    assert message in str(e.value)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_bars(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match="must be .csv or .parquet"):
        load_bars(tmp_path / "x.txt")
