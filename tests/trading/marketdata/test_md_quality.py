import numpy as np
import polars as pl
import pytest

from trading.marketdata import quality as q
from trading.marketdata.quality import QualitySchemaError, clean_ohlcv
from trading.records import NS_PER_S

MIN = 60 * NS_PER_S


@pytest.fixture(scope="module")
def bars(sim):
    return sim.generate_bars(sim.config.origin_ns, 3000)


def _set(df: pl.DataFrame, row: int, **values) -> pl.DataFrame:
    idx = pl.int_range(pl.len())
    return df.with_columns(*(pl.when(idx == row).then(pl.lit(v)).otherwise(pl.col(c)).alias(c) for c, v in values.items()))


def test_clean_sim_data_passes_almost_untouched(bars):
    res = clean_ohlcv(bars)
    assert res.quarantine.height <= 3 and res.counts[q.DUPLICATE] == 0
    assert res.clean.height + res.quarantine.height == bars.height
    assert res.clean.columns == bars.columns


def test_seeded_bad_rows_are_quarantined_with_reasons(bars):
    rng = np.random.default_rng(11)
    rows = rng.choice(np.arange(100, 900), size=8, replace=False).tolist()  # BTC rows, away from the edges
    df = bars
    c = df["close"]
    df = _set(df, rows[0], close=float("nan"))
    df = _set(df, rows[1], open=-1.0)
    df = _set(df, rows[2], volume=-3.0)
    df = _set(df, rows[3], low=float(c[rows[3]]) * 1.01)  # low above close
    df = _set(df, rows[4], close=float(c[rows[4]]) * 1.3, high=float(c[rows[4]]) * 1.3)  # fat-finger spike
    df = _set(df, rows[5], ts=int(df["ts"][rows[5]]) + 7)  # off the minute grid
    df = _set(df, rows[6], high=float(c[rows[6]]) * 1.5)  # bad print in the high only
    spike_volume = float(df["volume"][rows[7]]) * 20
    df = _set(df, rows[7], close=float(c[rows[7]]) * 1.05, high=float(c[rows[7]]) * 1.05, volume=spike_volume)
    dupes = df.slice(2000, 5)  # exact duplicates of ETH rows
    conflict = _set(df.slice(2100, 1), 0, volume=123.0)  # same key, different volume
    res = clean_ohlcv(pl.concat([df, dupes, conflict]))
    reasons = dict(zip(*res.quarantine.select("ts", "reason").to_dict(as_series=False).values()))
    ts = df["ts"]
    assert reasons[ts[rows[0]]] == q.NOT_FINITE
    assert reasons[ts[rows[1]]] == q.NON_POSITIVE_PRICE
    assert reasons[ts[rows[2]]] == q.NEGATIVE_VOLUME
    assert reasons[ts[rows[3]]] == q.OHLC_INCONSISTENT
    assert reasons[ts[rows[4]]] == q.UNCONFIRMED_JUMP
    assert reasons[ts[rows[5]]] == q.MISALIGNED_TS
    assert reasons[ts[rows[6]]] == q.UNCONFIRMED_WICK
    assert ts[rows[7]] not in reasons  # a jump on 20x volume is real
    assert ts[rows[4] + 1] not in reasons  # the move back after the spike is not a second outlier
    assert res.counts[q.DUPLICATE] == 5
    assert res.counts[q.CONFLICTING_DUPLICATE] == 2
    assert res.quarantine.filter(pl.col("reason") == q.CONFLICTING_DUPLICATE)["volume"].to_list().count(123.0) == 1
    total_removed = sum(v for k, v in res.counts.items() if k != q.DUPLICATE)
    assert res.quarantine.height == total_removed and res.clean.height + total_removed + 5 == df.height + 6


def test_gaps_are_listed(bars):
    df = bars.filter(~pl.col("ts").is_in([bars["ts"][10], bars["ts"][11], bars["ts"][50]]) | (pl.col("symbol") != "BTC/USDT"))
    res = clean_ohlcv(df)
    gaps = res.gaps.filter(pl.col("symbol") == "BTC/USDT")
    assert gaps.select("gap_start", "gap_end", "missing").rows() == [
        (bars["ts"][10], bars["ts"][12], 2),
        (bars["ts"][50], bars["ts"][51], 1),
    ]


def test_datetime_ts_is_accepted(bars):
    df = bars.head(100).with_columns(pl.from_epoch("ts", time_unit="ns").dt.replace_time_zone("UTC"))
    res = clean_ohlcv(df)
    assert res.clean["ts"].dtype == pl.Int64 and res.clean["ts"].to_list() == bars.head(100)["ts"].to_list()


def test_missing_and_bad_interval(bars):
    df = _set(_set(bars.head(50), 5, volume=None), 6, interval="7x")
    res = clean_ohlcv(df)
    assert res.counts[q.MISSING] == 1 and res.counts[q.BAD_INTERVAL] == 1


def test_schema_errors_name_the_column(bars):
    with pytest.raises(QualitySchemaError, match="volume"):
        clean_ohlcv(bars.drop("volume"))
    with pytest.raises(QualitySchemaError, match="ts"):
        clean_ohlcv(bars.with_columns(pl.col("ts").cast(pl.String)))


def test_empty_frame(bars):
    res = clean_ohlcv(bars.head(0))
    assert res.clean.height == 0 and res.quarantine.height == 0 and res.gaps.height == 0 and not res.counts
