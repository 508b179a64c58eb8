"""Market data layers: the clean layer, quarantined rows with their reason, detected gaps, and stored
data-quality results.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    hypertables = bool(bind.exec_driver_sql(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").scalar())
    columns = """
        exchange     text        NOT NULL,
        symbol       text        NOT NULL,
        interval     text        NOT NULL,
        ts           timestamptz NOT NULL,
        open         numeric     NOT NULL CHECK (open > 0),
        high         numeric     NOT NULL CHECK (high > 0),
        low          numeric     NOT NULL CHECK (low > 0),
        close        numeric     NOT NULL CHECK (close > 0),
        volume       numeric     NOT NULL CHECK (volume >= 0),
        record_id    text        NOT NULL,
        gap_before   boolean     NOT NULL DEFAULT false,
        cleaned_at   timestamptz NOT NULL DEFAULT now(),
        CHECK (low <= least(open, close) AND high >= greatest(open, close)),
        PRIMARY KEY (exchange, symbol, interval, ts)
    """
    if hypertables:
        op.execute(f"CREATE TABLE market_data_clean ({columns})")
        op.execute("SELECT create_hypertable('market_data_clean', 'ts', chunk_time_interval => interval '7 days')")
    else:
        op.execute(f"CREATE TABLE market_data_clean ({columns}) PARTITION BY RANGE (ts)")
        op.execute("CREATE TABLE market_data_clean_default PARTITION OF market_data_clean DEFAULT")
        op.execute("SELECT tradeloop_ensure_partitions('market_data_clean', now() - interval '1 month', "
                   "now() + interval '3 months')")

    # quarantined rows keep whatever they had (possibly NaN or negative), hence no constraints on values;
    # layer 'raw': refused on the way into market_data (a second, conflicting row for the same key),
    # layer 'clean': removed on the way into market_data_clean
    op.execute("""
        CREATE TABLE market_data_quarantine (
            exchange      text        NOT NULL,
            symbol        text        NOT NULL,
            interval      text        NOT NULL,
            ts            timestamptz NOT NULL,
            open          numeric,
            high          numeric,
            low           numeric,
            close         numeric,
            volume        numeric,
            reason        text        NOT NULL,
            layer         text        NOT NULL CHECK (layer IN ('raw', 'clean')),
            partition_key text        NOT NULL,
            detected_at   timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX market_data_quarantine_partition ON market_data_quarantine (partition_key)")

    op.execute("""
        CREATE TABLE market_data_gaps (
            exchange       text        NOT NULL,
            symbol         text        NOT NULL,
            interval       text        NOT NULL,
            gap_start      timestamptz NOT NULL,
            gap_end        timestamptz NOT NULL,
            missing_bars   integer     NOT NULL CHECK (missing_bars > 0),
            partition_key  text        NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, gap_start)
        )
    """)

    op.execute("""
        CREATE TABLE dq_results (
            asset          text        NOT NULL,
            partition_key  text        NOT NULL,
            suite          text        NOT NULL,
            run_id         text        NOT NULL,
            success        boolean     NOT NULL,
            evaluated      integer     NOT NULL,
            failed         integer     NOT NULL,
            results        jsonb       NOT NULL,
            docs_url       text,
            validated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (asset, partition_key, suite, run_id)
        )
    """)


def downgrade() -> None:
    for name in ("dq_results", "market_data_gaps", "market_data_quarantine", "market_data_clean"):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
