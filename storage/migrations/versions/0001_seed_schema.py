"""Seed schema: market_data, orders, trades, positions, strategy_performance, risk_metrics,
ml_models, audit_log.

Money and quantities are NUMERIC (exact). Time-series tables (market_data, trades, risk_metrics,
audit_log) become TimescaleDB hypertables when the extension is available, and are natively
range-partitioned by month on `ts` otherwise, with a DEFAULT partition so that no insert can fail for
want of a partition and `tradeloop_ensure_partitions()` to add months (moving any rows the default
partition already holds for them).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESERIES: dict[str, tuple[str, str]] = {
    # name: (columns, primary key) -- the primary key must contain ts to partition on it
    "market_data": (
        """
        exchange     text        NOT NULL,
        symbol       text        NOT NULL,
        interval     text        NOT NULL,
        ts           timestamptz NOT NULL,
        open         numeric     NOT NULL,
        high         numeric     NOT NULL,
        low          numeric     NOT NULL,
        close        numeric     NOT NULL,
        volume       numeric     NOT NULL,
        record_id    text        NOT NULL,
        receive_ts   timestamptz,
        source       text        NOT NULL DEFAULT 'sim',
        ingested_at  timestamptz NOT NULL DEFAULT now()
        """,
        "exchange, symbol, interval, ts",
    ),
    "trades": (
        """
        fill_id          text        NOT NULL,
        client_order_id  text        NOT NULL,
        account          text        NOT NULL,
        strategy         text        NOT NULL,
        exchange         text        NOT NULL,
        symbol           text        NOT NULL,
        side             text        NOT NULL CHECK (side IN ('buy', 'sell')),
        price            numeric     NOT NULL CHECK (price > 0),
        quantity         numeric     NOT NULL CHECK (quantity > 0),
        fee              numeric     NOT NULL DEFAULT 0,
        fee_currency     text        NOT NULL,
        liquidity        text        NOT NULL CHECK (liquidity IN ('maker', 'taker')),
        ts               timestamptz NOT NULL,
        mode             text        NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live', 'backtest'))
        """,
        "fill_id, ts",
    ),
    "risk_metrics": (
        """
        ts       timestamptz NOT NULL,
        account  text        NOT NULL,
        scope    text        NOT NULL,
        metric   text        NOT NULL,
        value    numeric     NOT NULL
        """,
        "account, scope, metric, ts",
    ),
    "audit_log": (
        """
        event_id  text        NOT NULL,
        ts        timestamptz NOT NULL DEFAULT now(),
        actor     text        NOT NULL,
        action    text        NOT NULL,
        scope     text        NOT NULL,
        reason    text        NOT NULL DEFAULT '',
        details   jsonb       NOT NULL DEFAULT '{}'::jsonb
        """,
        "event_id, ts",
    ),
}

ENSURE_PARTITIONS = """
CREATE OR REPLACE FUNCTION tradeloop_ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m       timestamptz := date_trunc('month', from_ts, 'UTC');
    next_m  timestamptz;
    part    text;
    created integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid
                   WHERE c.relname = parent) THEN
        RETURN 0;  -- a hypertable (TimescaleDB manages chunks) or a plain table
    END IF;
    -- serialise concurrent writers creating the same month
    PERFORM pg_advisory_xact_lock(hashtext('tradeloop_partitions:' || parent));
    WHILE m <= to_ts LOOP
        next_m := m + interval '1 month';
        part := format('%s_p%s', parent, to_char(m AT TIME ZONE 'UTC', 'YYYYMM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
            -- rows that landed in the default partition for this month move to their own partition
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE ts >= %L AND ts < %L RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved', parent || '_default', m, next_m, part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           parent, part, m, next_m);
            created := created + 1;
        END IF;
        m := next_m;
    END LOOP;
    RETURN created;
END $$;
"""


def timescale_available(bind) -> bool:
    """The extension is created already, or installed on the server with its library preloaded (without the
    preload CREATE EXTENSION fails: such a server gets native partitions).  A loaded library shows as its
    timescaledb.* settings, which any role may read (shared_preload_libraries itself is superuser-only)."""
    return bool(bind.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
        " OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        "     AND EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'timescaledb.%'))"
    )).scalar())


def upgrade() -> None:
    bind = op.get_bind()
    use_timescale = timescale_available(bind)
    if use_timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(ENSURE_PARTITIONS)

    for name, (columns, pk) in TIMESERIES.items():
        if use_timescale:
            op.execute(f"CREATE TABLE {name} ({columns}, PRIMARY KEY ({pk}))")
            op.execute(f"SELECT create_hypertable('{name}', 'ts', chunk_time_interval => interval '7 days')")
        else:
            op.execute(f"CREATE TABLE {name} ({columns}, PRIMARY KEY ({pk})) PARTITION BY RANGE (ts)")
            op.execute(f"CREATE TABLE {name}_default PARTITION OF {name} DEFAULT")
            # the months around now exist up front; writers call tradeloop_ensure_partitions for others
            op.execute(f"SELECT tradeloop_ensure_partitions('{name}', now() - interval '1 month', "
                       f"now() + interval '3 months')")

    op.execute("CREATE INDEX market_data_symbol_ts ON market_data (symbol, ts)")
    op.execute("CREATE INDEX trades_account_symbol_ts ON trades (account, symbol, ts)")
    op.execute("CREATE INDEX trades_client_order_id ON trades (client_order_id)")
    op.execute("CREATE INDEX audit_log_scope_ts ON audit_log (scope, ts)")

    op.execute("""
        CREATE TABLE orders (
            client_order_id  text        PRIMARY KEY,
            account          text        NOT NULL,
            strategy         text        NOT NULL,
            exchange         text        NOT NULL,
            symbol           text        NOT NULL,
            side             text        NOT NULL CHECK (side IN ('buy', 'sell')),
            order_type       text        NOT NULL CHECK (order_type IN ('market', 'limit', 'stop', 'stop_limit')),
            quantity         numeric     NOT NULL CHECK (quantity > 0),
            price            numeric     CHECK (price > 0),
            stop_price       numeric     CHECK (stop_price > 0),
            time_in_force    text        NOT NULL CHECK (time_in_force IN ('gtc', 'ioc', 'fok')),
            post_only        boolean     NOT NULL DEFAULT false,
            status           text        NOT NULL CHECK (status IN ('new', 'ack', 'partially_filled', 'filled',
                                                                    'canceled', 'rejected', 'expired')),
            filled_quantity  numeric     NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0),
            reason           text,
            parent_id        text,
            mode             text        NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live', 'backtest')),
            created_at       timestamptz NOT NULL,
            updated_at       timestamptz NOT NULL
        )
    """)
    op.execute("CREATE INDEX orders_open ON orders (account, symbol) WHERE status IN ('new', 'ack', 'partially_filled')")

    op.execute("""
        CREATE TABLE positions (
            account       text        NOT NULL,
            strategy      text        NOT NULL,
            symbol        text        NOT NULL,
            quantity      numeric     NOT NULL,
            avg_price     numeric     NOT NULL DEFAULT 0,
            realized_pnl  numeric     NOT NULL DEFAULT 0,
            fees          numeric     NOT NULL DEFAULT 0,
            updated_at    timestamptz NOT NULL,
            PRIMARY KEY (account, strategy, symbol)
        )
    """)

    op.execute("""
        CREATE TABLE strategy_performance (
            strategy      text        NOT NULL,
            account       text        NOT NULL,
            as_of         date        NOT NULL,
            trade_count   integer     NOT NULL CHECK (trade_count >= 0),
            win_rate      numeric,
            sharpe        numeric,
            max_drawdown  numeric,
            total_return  numeric,
            pnl           numeric     NOT NULL DEFAULT 0,
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (strategy, account, as_of)
        )
    """)

    op.execute("""
        CREATE TABLE ml_models (
            model_name          text        NOT NULL,
            version             integer     NOT NULL,
            run_id              text        NOT NULL,
            training_data_hash  text        NOT NULL,
            status              text        NOT NULL CHECK (status IN ('registered', 'challenger', 'champion',
                                                                       'rejected', 'retired')),
            metrics             jsonb       NOT NULL DEFAULT '{}'::jsonb,
            gate                jsonb,
            created_at          timestamptz NOT NULL DEFAULT now(),
            promoted_at         timestamptz,
            PRIMARY KEY (model_name, version)
        )
    """)


def downgrade() -> None:
    for name in ("ml_models", "strategy_performance", "positions", "orders", *TIMESERIES):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS tradeloop_ensure_partitions(text, timestamptz, timestamptz)")
