"""Data lifecycle as a Dagster asset: the time-series tables' partitions kept ahead, and the retention settings
applied by dropping whole partitions or chunks (storage/lifecycle.py).  The data_maintenance job runs it on
the setting cron_maintenance (orchestration/automation.py)."""

import time
from datetime import datetime, timezone

import dagster as dg

from assets.resources import PostgresResource


@dg.asset(description="Partitions of every time-series table for this month and the next, then retention: "
                      "partitions/chunks wholly older than each TRADELOOP_RETENTION_*_DAYS are dropped "
                      "(an audit_log row lists them).")
def storage_lifecycle(context: dg.AssetExecutionContext, db: PostgresResource) -> dg.MaterializeResult:
    from deploy.settings import get_settings
    from storage import lifecycle

    retention = lifecycle.check_retention(get_settings().retention_days())
    with db.begin() as conn:
        created = lifecycle.ensure_ahead(conn, time.time_ns())
        adopted = lifecycle.adopt_default_rows(conn)  # rows stranded in a default partition become droppable
    # a second transaction: partitions ahead are kept even when a drop waits too long for a lock and fails
    with db.begin() as conn:
        dropped = lifecycle.apply_retention(conn, retention, datetime.now(timezone.utc))
    for d in dropped:
        context.log.info(f"dropped {d.kind} {d.name} of {d.table} [{d.range_start}, {d.range_end}): {d.rows} rows")
    if not retention:
        context.log.info("no retention set (TRADELOOP_RETENTION_*_DAYS): every time-series table is kept forever")
    return dg.MaterializeResult(metadata={
        "partitions_created": sum(created.values()) + sum(adopted.values()),
        "retention_days": dg.MetadataValue.json(retention),
        "dropped": len(dropped),
        "rows_dropped": sum(d.rows for d in dropped),
        "dropped_names": dg.MetadataValue.json([d.name for d in dropped]),
    })
