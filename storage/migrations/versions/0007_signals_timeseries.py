"""Signals become a time-series table like the others, so that retention can drop them by whole partitions
(or TimescaleDB chunks) instead of deleting rows: monthly range partitions with a default partition, or a
hypertable when TimescaleDB is in use.

The primary key becomes (signal_id, ts): a partitioned table's keys must contain the partition column.  The
id is derived from the decision time (streaming: stable_id("signal", account, slot, symbol, ts, ...)), so
the pair is as unique as the id and a replayed batch still adds nothing.  Existing rows are copied over.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = """
    signal_id      text             NOT NULL,
    ts             timestamptz      NOT NULL,
    account        text             NOT NULL,
    strategy       text             NOT NULL,
    symbol         text             NOT NULL,
    score          double precision,
    target         double precision NOT NULL,
    model_name     text             NOT NULL,
    model_version  text             NOT NULL,
    shadow         boolean          NOT NULL DEFAULT false,
    created_at     timestamptz      NOT NULL DEFAULT now()
"""
NAMES = "signal_id, ts, account, strategy, symbol, score, target, model_name, model_version, shadow, created_at"


def upgrade() -> None:
    bind = op.get_bind()
    hypertables = bool(bind.exec_driver_sql(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").scalar())
    op.execute("ALTER TABLE signals RENAME TO signals_plain")
    op.execute("ALTER TABLE signals_plain RENAME CONSTRAINT signals_pkey TO signals_plain_pkey")
    op.execute("ALTER INDEX signals_account_strategy_ts RENAME TO signals_plain_account_strategy_ts")
    if hypertables:
        op.execute(f"CREATE TABLE signals ({COLUMNS}, PRIMARY KEY (signal_id, ts))")
        op.execute("SELECT create_hypertable('signals', 'ts', chunk_time_interval => interval '7 days')")
    else:
        op.execute(f"CREATE TABLE signals ({COLUMNS}, PRIMARY KEY (signal_id, ts)) PARTITION BY RANGE (ts)")
        op.execute("CREATE TABLE signals_default PARTITION OF signals DEFAULT")
        # every month that already has signals, and the months around now
        op.execute("SELECT tradeloop_ensure_partitions('signals', least(now(), (SELECT min(ts) FROM signals_plain))"
                   " - interval '1 month', now() + interval '3 months')")
    op.execute(f"INSERT INTO signals ({NAMES}) SELECT {NAMES} FROM signals_plain")
    op.execute("DROP TABLE signals_plain")
    op.execute("CREATE INDEX signals_account_strategy_ts ON signals (account, strategy, ts)")


def downgrade() -> None:
    op.execute("ALTER TABLE signals RENAME TO signals_timeseries")
    op.execute(f"CREATE TABLE signals ({COLUMNS.replace('signal_id      text             NOT NULL', 'signal_id text PRIMARY KEY')})")
    op.execute(f"INSERT INTO signals ({NAMES}) SELECT {NAMES} FROM signals_timeseries")
    op.execute("DROP TABLE signals_timeseries CASCADE")
    op.execute("CREATE INDEX signals_account_strategy_ts ON signals (account, strategy, ts)")
