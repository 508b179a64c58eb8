"""Historical store: `ohlcv` (raw, as the source gave it) and `ohlcv_clean` (gaps marked, duplicates
dropped, outliers quarantined), partitioned by day x symbol, with Great Expectations checks.

The raw check reports (it must show bad input, not hide it); the clean check blocks: nothing
downstream reads a clean partition that failed it.
"""


import zlib
from datetime import datetime, timedelta, timezone

import dagster as dg

from assets.partitions import DAILY_BY_SYMBOL, key_symbol
from assets.resources import MarketDataSource, PostgresResource
from deploy.settings import get_settings

INTERVAL = "1m"
INTERVAL_S = 60
BARS_PER_DAY = 24 * 60 * 60 // INTERVAL_S

# day x symbol, from the settings when the code location loads (assets/partitions.py)
OHLCV_PARTITIONS = DAILY_BY_SYMBOL


class QualityConfig(dg.Config):
    update_data_docs: bool = True
    """Render this run's validation result into the Data Docs site (its page and the index). Off: the
    result is stored (GE project, dq_results) without a Data Docs link, and the site is not touched until
    `assets.data_docs.build_site` renders the missing pages (the simulation does, after its last day)."""


class OhlcvConfig(QualityConfig):
    inject_bad_rows: int = 0
    """Drill: corrupt this many raw rows (NaN, negative volume, high < low, duplicate, unconfirmed spike)
    to rehearse the data-quality path from the UI. Zero in normal operation."""


def _window(context: dg.AssetExecutionContext) -> tuple[str, str, datetime, datetime]:
    keys = context.partition_key.keys_by_dimension
    start = datetime.fromisoformat(keys["date"]).replace(tzinfo=timezone.utc)
    return keys["date"], key_symbol(keys["symbol"]), start, start + timedelta(days=1)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def gx_dirs(settings) -> tuple:
    """The Great Expectations project and the Data Docs site of the market-data checks."""
    return settings.home / "gx", settings.site_dir / "data_docs"


def _validate(context, frame, suite: str, start: datetime, end: datetime, update_docs: bool):
    from assets.data_docs import validate
    from assets.ohlcv_expectations import last_expected_bar, ohlcv_suite, suite_parameters, to_pandas

    through = last_expected_bar(start, end, INTERVAL_S, datetime.now(timezone.utc))
    settings = get_settings()
    project_dir, site_dir = gx_dirs(settings)
    label = f"{context.partition_key.replace('|', '_')}_{context.run.run_id[:8]}"
    summary = validate(to_pandas(frame), suite, ohlcv_suite(BARS_PER_DAY),
                       expectation_parameters=suite_parameters(through), project_dir=project_dir,
                       site_dir=site_dir, batch_label=label, update_docs=update_docs)
    docs_url = None
    if summary.docs_path is not None:
        docs_url = f"{settings.docs_url}/{summary.docs_path.relative_to(settings.site_dir).as_posix()}"
    return summary, docs_url


def _check_metadata(summary, docs_url: str | None) -> dict:
    metadata = {
        "evaluated": summary.evaluated,
        "failed": summary.failed,
        "failures": dg.MetadataValue.json(summary.failures()),
    }
    if docs_url:
        metadata["data_docs"] = dg.MetadataValue.url(docs_url)
        metadata["data_docs_index"] = dg.MetadataValue.url(f"{get_settings().docs_url}/data_docs/index.html")
    return metadata


@dg.asset(
    partitions_def=OHLCV_PARTITIONS,
    group_name="market_data",
    kinds={"postgres", "polars"},
    check_specs=[dg.AssetCheckSpec("raw_quality", asset="ohlcv",
                                   description="Great Expectations suite ohlcv_raw on the stored partition")],
    description="One-minute OHLCV bars per day and symbol, as the source gave them (table market_data).",
)
def ohlcv(context: dg.AssetExecutionContext, config: OhlcvConfig, db: PostgresResource,
          market_source: MarketDataSource):
    import sqlalchemy as sa  # noqa: F401  (typing of the connection)

    from storage import market_data as market_store
    from trading.marketdata.drills import corrupt_bars

    day, symbol, start, end = _window(context)
    frame, counts = market_source.fetch_bars(symbol, INTERVAL, _ns(start), _ns(end))
    if config.inject_bad_rows:
        frame = corrupt_bars(frame, config.inject_bad_rows, seed=zlib.crc32(context.partition_key.encode()))
    with db.begin() as conn:
        written = market_store.replace_raw(conn, frame, market_source.exchange_name(), symbol, INTERVAL,
                                           _ns(start), _ns(end), source=market_source.kind,
                                           partition_key=context.partition_key)
        stored = market_store.read_raw(conn, market_source.exchange_name(), symbol, INTERVAL, _ns(start), _ns(end))
    summary, docs_url = _validate(context, stored, "ohlcv_raw", start, end, config.update_data_docs)
    with db.begin() as conn:
        market_store.store_dq_result(conn, "ohlcv", context.partition_key, summary, context.run.run_id, docs_url)
    rejected = {**counts, **{k: v for k, v in written.items() if k != "written" and v}}
    for reason, n in sorted(rejected.items()):
        context.log.warning(f"{symbol} {day}: {n} source row(s) not stored as-is: {reason}")
    yield dg.MaterializeResult(metadata={
        "rows": written["written"],
        "rejected_by_reason": dg.MetadataValue.json(rejected),
        "source": market_source.kind,
        "first_bar": str(start), "day": day, "symbol": symbol,
    })
    yield dg.AssetCheckResult(check_name="raw_quality", passed=summary.success,
                              severity=dg.AssetCheckSeverity.ERROR, metadata=_check_metadata(summary, docs_url))


@dg.asset(
    partitions_def=OHLCV_PARTITIONS,
    deps=[ohlcv],
    group_name="market_data",
    kinds={"postgres", "polars"},
    check_specs=[dg.AssetCheckSpec("clean_quality", asset="ohlcv_clean", blocking=True,
                                   description="Great Expectations suite ohlcv_clean; blocks downstream on failure")],
    description="Cleaned bars (market_data_clean): exact duplicates dropped, bad rows and unconfirmed jumps "
                "quarantined with their reason (market_data_quarantine), gaps listed (market_data_gaps).",
)
def ohlcv_clean(context: dg.AssetExecutionContext, config: QualityConfig, db: PostgresResource,
                market_source: MarketDataSource):
    from storage import market_data as market_store
    from trading.marketdata.quality import clean_ohlcv

    day, symbol, start, end = _window(context)
    exchange = market_source.exchange_name()
    with db.begin() as conn:
        raw = market_store.read_raw(conn, exchange, symbol, INTERVAL, _ns(start), _ns(end))
    if raw.height == 0:
        raise dg.Failure(description=f"no raw bars for {symbol} on {day}: materialise `ohlcv` for this "
                                     f"partition first")
    result = clean_ohlcv(raw)
    with db.begin() as conn:
        market_store.replace_clean(conn, result.clean, result.quarantine, result.gaps, exchange, symbol,
                                   INTERVAL, _ns(start), _ns(end), context.partition_key)
    summary, docs_url = _validate(context, result.clean, "ohlcv_clean", start, end, config.update_data_docs)
    with db.begin() as conn:
        market_store.store_dq_result(conn, "ohlcv_clean", context.partition_key, summary, context.run.run_id, docs_url)
    for reason, n in sorted(result.counts.items()):
        context.log.warning(f"{symbol} {day}: {n} row(s) removed: {reason}")
    yield dg.MaterializeResult(metadata={
        "rows": result.clean.height,
        "quarantined": result.quarantine.height,
        "removed_by_reason": dg.MetadataValue.json(dict(result.counts)),
        "gaps": result.gaps.height,
        "missing_bars": int(result.gaps["missing"].sum()) if result.gaps.height else 0,
    })
    yield dg.AssetCheckResult(check_name="clean_quality", passed=summary.success,
                              severity=dg.AssetCheckSeverity.ERROR, metadata=_check_metadata(summary, docs_url))
