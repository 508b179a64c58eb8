"""The Great Expectations suites of the OHLCV layers (raw and clean)."""

from __future__ import annotations

from datetime import datetime, timezone


COMPLETE_THROUGH = "complete_through"


def ohlcv_suite(expected_rows: int) -> list:
    """OHLC consistency, non-negative volume, monotonic timestamps, unique keys, completeness, freshness.

    The freshness bound is the suite parameter `complete_through` (``suite_parameters``), so one suite
    serves every partition.
    """
    import great_expectations.expectations as gxe

    prices = ("open", "high", "low", "close")
    suite = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("ts", *prices, "volume")]
    suite += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in prices]
    suite += [
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="open", or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="open", column_B="low", or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", or_equal=True),
        # strictly increasing: monotonic and, within one symbol, no duplicate timestamps
        gxe.ExpectColumnValuesToBeIncreasing(column="ts", strictly=True),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["exchange", "symbol", "interval", "ts"]),
        # completeness: at least 99% of the partition's intervals present, never more than all of them
        gxe.ExpectTableRowCountToBeBetween(min_value=int(expected_rows * 0.99), max_value=expected_rows),
        # freshness: the data reaches the end of the partition (or now, for today's)
        gxe.ExpectColumnMaxToBeBetween(column="ts", min_value={"$PARAMETER": COMPLETE_THROUGH}),
    ]
    return suite


def suite_parameters(complete_through: datetime) -> dict:
    """The suite's parameters for one partition: its last bar must open at or after `complete_through`
    (the partition's last interval, or `now` for a partition still being written)."""
    return {COMPLETE_THROUGH: complete_through.astimezone(timezone.utc).replace(tzinfo=None)}


def to_pandas(frame):
    """polars OHLCV (ts in ns) to the pandas frame GE validates, with ts as a naive UTC datetime."""
    import polars as pl

    return frame.select(
        "exchange", "symbol", "interval", pl.from_epoch("ts", time_unit="ns").alias("ts"),
        "open", "high", "low", "close", "volume",
    ).to_pandas()


def last_expected_bar(start: datetime, end: datetime, interval_s: int, now: datetime) -> datetime:
    from datetime import timedelta

    last = end - timedelta(seconds=interval_s)
    # a partition still in progress is fresh if it reaches within two intervals of now
    return min(last, now - timedelta(seconds=2 * interval_s))
