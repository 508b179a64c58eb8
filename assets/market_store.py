"""SQL for the market data layers: replace one partition's rows atomically, read them back.

Prices travel as text between PostgreSQL NUMERIC and here so that what is stored stays exact: the
clean layer writes the very strings the raw layer holds.
"""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import sqlalchemy as sa

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def decimal_text(x: float) -> str:
    """Shortest exact-looking text of a float price; NaN/inf kept (the raw layer must show bad input)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(round(x, 10))


def ensure_partitions(conn: sa.Connection, table: str, start_ns: int, end_ns: int) -> None:
    conn.execute(sa.text("SELECT tradeloop_ensure_partitions(:t, :a, :b)"),
                 {"t": table, "a": _ts(start_ns), "b": _ts(end_ns)})


KEY = ("exchange", "symbol", "interval", "ts")


def replace_raw(conn: sa.Connection, frame: pl.DataFrame, exchange: str, symbol: str, interval: str,
                start_ns: int, end_ns: int, source: str, partition_key: str) -> dict[str, int]:
    """Delete the partition's raw rows and write `frame` in the same transaction (idempotent replace).

    One row per key reaches market_data: exact repeats are dropped and counted; a second row with the
    same key but other values goes to market_data_quarantine (layer 'raw'), never silently away.
    Returns row counts: written, duplicate, conflicting_duplicate.
    """
    columns = [*KEY, *PRICE_COLUMNS, "record_id"]
    frame = frame.select(columns)
    exact = frame.unique(maintain_order=True)
    first = exact.select(pl.struct(list(KEY)).is_first_distinct().alias("_first")).to_series()
    keep, conflicting = exact.filter(first), exact.filter(~first)
    ensure_partitions(conn, "market_data", start_ns, end_ns)
    params = {"e": exchange, "s": symbol, "i": interval, "a": _ts(start_ns), "b": _ts(end_ns)}
    conn.execute(sa.text("""DELETE FROM market_data WHERE exchange = :e AND symbol = :s AND interval = :i
                            AND ts >= :a AND ts < :b"""), params)
    conn.execute(sa.text("""DELETE FROM market_data_quarantine WHERE layer = 'raw' AND partition_key = :p
                            AND symbol = :s"""), {"p": partition_key, "s": symbol})
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy("COPY market_data (exchange, symbol, interval, ts, open, high, low, close, volume, "
                      "record_id, source) FROM STDIN") as copy:
            for row in keep.iter_rows():
                copy.write_row((*row[:3], _ts(row[3]), *(decimal_text(v) for v in row[4:9]), row[9], source))
        with cur.copy("COPY market_data_quarantine (exchange, symbol, interval, ts, open, high, low, close, "
                      "volume, reason, layer, partition_key) FROM STDIN") as copy:
            for row in conflicting.iter_rows():
                copy.write_row((*row[:3], _ts(row[3]), *(decimal_text(v) for v in row[4:9]),
                                "conflicting_duplicate", "raw", partition_key))
    return {"written": keep.height, "duplicate": frame.height - exact.height,
            "conflicting_duplicate": conflicting.height}


def read_raw(conn: sa.Connection, exchange: str, symbol: str, interval: str, start_ns: int,
             end_ns: int) -> pl.DataFrame:
    """The partition's raw rows; prices both as floats (for checks) and as exact text (for storage)."""
    rows = conn.execute(sa.text("""
        SELECT exchange, symbol, interval,
               (extract(epoch FROM ts) * 1000000)::bigint * 1000 AS ts,
               open::text, high::text, low::text, close::text, volume::text, record_id
        FROM market_data
        WHERE exchange = :e AND symbol = :s AND interval = :i AND ts >= :a AND ts < :b
        ORDER BY ts
    """), {"e": exchange, "s": symbol, "i": interval, "a": _ts(start_ns), "b": _ts(end_ns)}).all()
    text_cols = [f"{c}_text" for c in PRICE_COLUMNS]
    frame = pl.DataFrame(rows, schema=["exchange", "symbol", "interval", "ts", *text_cols, "record_id"],
                         orient="row", schema_overrides={"ts": pl.Int64})
    return frame.with_columns(pl.col(t).cast(pl.Float64, strict=False).alias(c)
                              for t, c in zip(text_cols, PRICE_COLUMNS))


def replace_clean(conn: sa.Connection, clean: pl.DataFrame, quarantine: pl.DataFrame, gaps: pl.DataFrame,
                  exchange: str, symbol: str, interval: str, start_ns: int, end_ns: int,
                  partition_key: str) -> None:
    """Replace the partition in the clean layer, its quarantined rows and its gaps, all in one go."""
    params = {"e": exchange, "s": symbol, "i": interval, "a": _ts(start_ns), "b": _ts(end_ns)}
    ensure_partitions(conn, "market_data_clean", start_ns, end_ns)
    conn.execute(sa.text("""DELETE FROM market_data_clean WHERE exchange = :e AND symbol = :s AND interval = :i
                            AND ts >= :a AND ts < :b"""), params)
    conn.execute(sa.text("""DELETE FROM market_data_quarantine WHERE layer = 'clean' AND partition_key = :p
                            AND symbol = :s"""), {"p": partition_key, "s": symbol})
    conn.execute(sa.text("""DELETE FROM market_data_gaps WHERE exchange = :e AND symbol = :s AND interval = :i
                            AND gap_start >= :a AND gap_start < :b"""), params)
    after_gap = set(gaps["gap_end"].to_list()) if gaps.height else set()  # first bar after each gap
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy("COPY market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, "
                      "record_id, gap_before) FROM STDIN") as copy:
            for row in clean.select("exchange", "symbol", "interval", "ts", *(f"{c}_text" for c in PRICE_COLUMNS),
                                    "record_id").iter_rows():
                copy.write_row((*row[:3], _ts(row[3]), *row[4:10], row[3] in after_gap))
        with cur.copy("COPY market_data_quarantine (exchange, symbol, interval, ts, open, high, low, close, volume, "
                      "reason, layer, partition_key) FROM STDIN") as copy:
            for row in quarantine.select("exchange", "symbol", "interval", "ts",
                                         *(f"{c}_text" for c in PRICE_COLUMNS), "reason").iter_rows():
                copy.write_row((*row[:3], _ts(row[3]), *row[4:10], "clean", partition_key))
        with cur.copy("COPY market_data_gaps (exchange, symbol, interval, gap_start, gap_end, missing_bars, "
                      "partition_key) FROM STDIN") as copy:
            for row in gaps.select("exchange", "symbol", "interval", "gap_start", "gap_end", "missing").iter_rows():
                copy.write_row((*row[:3], _ts(row[3]), _ts(row[4]), row[5], partition_key))


def store_dq_result(conn: sa.Connection, asset: str, partition_key: str, summary, run_id: str,
                    docs_url: str | None) -> None:
    import json

    conn.execute(sa.text("""
        INSERT INTO dq_results (asset, partition_key, suite, run_id, success, evaluated, failed, results, docs_url)
        VALUES (:asset, :p, :suite, :run, :ok, :n, :f, CAST(:results AS jsonb), :url)
        ON CONFLICT (asset, partition_key, suite, run_id) DO UPDATE
        SET success = EXCLUDED.success, evaluated = EXCLUDED.evaluated, failed = EXCLUDED.failed,
            results = EXCLUDED.results, docs_url = EXCLUDED.docs_url, validated_at = now()
    """), {"asset": asset, "p": partition_key, "suite": summary.suite, "run": run_id, "ok": summary.success,
           "n": summary.evaluated, "f": summary.failed, "results": json.dumps(summary.results), "url": docs_url})
