"""The market data layers (market_data, market_data_clean, market_data_quarantine, market_data_gaps,
dq_results): replace one partition's rows atomically, read them back, and every read of clean bars.

Prices travel as text between PostgreSQL NUMERIC and here so that what is stored stays exact: the
clean layer writes the very strings the raw layer holds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

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
    raw = conn.connection.driver_connection  # COPY is psycopg's own: the fastest bulk write
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


# -- reads of the clean layer ---------------------------------------------------------------------------

def load_clean_bars(conn: sa.Connection, *, exchange: str | None, symbols: list[str] | None, interval: str = "1m",
                    start_ns: int | None = None, end_ns: int | None = None) -> pl.DataFrame:
    """Clean bars in [start_ns, end_ns) (open bounds when None) of ``exchange`` (None: every exchange) and
    ``symbols`` (None or empty: all), ordered by symbol then time.  Columns exchange, symbol, interval,
    ts (open time, ns) and open/high/low/close/volume as floats: every stored price was written as the
    text of a float (decimal_text), so the float reads back exactly."""
    where, params = ["interval = :i"], {"i": interval}
    if exchange is not None:
        where.append("exchange = :e")
        params["e"] = exchange
    if symbols:
        where.append("symbol = ANY(:s)")
        params["s"] = list(symbols)
    if start_ns is not None:
        where.append("ts >= :a")
        params["a"] = _ts(start_ns)
    if end_ns is not None:
        where.append("ts < :b")
        params["b"] = _ts(end_ns)
    rows = conn.execute(sa.text(f"""
        SELECT exchange, symbol, interval, (extract(epoch FROM ts) * 1000000)::bigint * 1000 AS ts,
               open::float8, high::float8, low::float8, close::float8, volume::float8
        FROM market_data_clean WHERE {" AND ".join(where)}
        ORDER BY symbol, ts"""), params).fetchall()
    return pl.DataFrame([tuple(r) for r in rows], orient="row", schema=CLEAN_BARS_SCHEMA)


CLEAN_BARS_SCHEMA = {"exchange": pl.Utf8, "symbol": pl.Utf8, "interval": pl.Utf8, "ts": pl.Int64,
                     "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
                     "volume": pl.Float64}


def last_clean_ts(conn: sa.Connection, exchange: str, symbol: str, interval: str = "1m") -> datetime | None:
    """Open time of the newest clean bar of ``symbol``, or None."""
    return conn.execute(sa.text("SELECT max(ts) FROM market_data_clean WHERE exchange = :e AND symbol = :s "
                                "AND interval = :i"), {"e": exchange, "s": symbol, "i": interval}).scalar()


def daily_closes(conn: sa.Connection, exchange: str, symbols: list[str], first: date, last: date) -> pl.DataFrame:
    """Last 1m close of each UTC day in [first, last] per symbol, as a (days x symbols) polars frame
    (column ``day``, then one column per symbol that has bars; a day without a bar is null)."""
    rows = conn.execute(sa.text("""
        SELECT DISTINCT ON (symbol, day) symbol, day, close
        FROM (SELECT symbol, (ts AT TIME ZONE 'UTC')::date AS day, ts, close FROM market_data_clean
              WHERE exchange = :exchange AND interval = '1m' AND symbol = ANY(:symbols)
                AND ts >= :start AND ts < :end) bars
        ORDER BY symbol, day, ts DESC
    """), {"exchange": exchange, "symbols": list(symbols),
           "start": datetime.combine(first, datetime.min.time(), timezone.utc),
           "end": datetime.combine(last + timedelta(days=1), datetime.min.time(), timezone.utc)}).all()
    frame = pl.DataFrame([(s, d, float(c)) for s, d, c in rows], schema={"symbol": pl.String, "day": pl.Date,
                                                                          "close": pl.Float64}, orient="row")
    if frame.height == 0:
        return frame
    return frame.pivot(on="symbol", index="day", values="close").sort("day")


def scenario_closes(conn: sa.Connection, exchange: str, interval: str, symbols: list[str], *, step_s: int,
                    window_s: int) -> list[tuple]:
    """(symbol, bucket start, close) rows: the last close per symbol and ``step_s`` bucket over the
    ``window_s`` seconds before the newest clean row of those symbols (the VaR scenarios' input)."""
    rows = conn.execute(sa.text("""
        WITH last AS (SELECT max(ts) AS t FROM market_data_clean
                      WHERE exchange = :ex AND interval = :iv AND symbol = ANY(:syms))
        SELECT symbol, date_bin(make_interval(secs => :step), ts, TIMESTAMPTZ '2000-01-01 00:00+00') AS b,
               (array_agg(close ORDER BY ts DESC))[1] AS c
        FROM market_data_clean, last
        WHERE exchange = :ex AND interval = :iv AND symbol = ANY(:syms)
          AND ts > last.t - make_interval(secs => :window)
        GROUP BY symbol, b ORDER BY b, symbol"""),
        {"ex": exchange, "iv": interval, "syms": list(symbols), "step": step_s, "window": window_s}).all()
    return [tuple(r) for r in rows]


def clean_days(conn: sa.Connection, exchange: str, symbol: str, first: date, last: date,
               interval: str = "1m") -> set[date]:
    """The UTC days in [first, last] with at least one clean bar of ``symbol``."""
    rows = conn.execute(sa.text("""
        SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM market_data_clean
        WHERE exchange = :e AND symbol = :s AND interval = :i
          AND ts >= :a AND ts < :b"""),
        {"e": exchange, "s": symbol, "i": interval,
         "a": datetime(first.year, first.month, first.day, tzinfo=timezone.utc),
         "b": datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1)})
    return {r[0] for r in rows}
