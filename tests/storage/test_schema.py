"""The seed schema, migrated by Alembic on a real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

SEED_TABLES = ("market_data", "orders", "trades", "positions", "strategy_performance", "risk_metrics",
               "ml_models", "audit_log")
TIMESERIES = ("market_data", "trades", "risk_metrics", "audit_log")


def test_every_seed_table_exists(engine):
    names = set(sa.inspect(engine).get_table_names())
    assert set(SEED_TABLES) <= names


def test_money_and_quantities_are_numeric_never_float(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = ANY(:tables)
              AND column_name IN ('open','high','low','close','volume','price','quantity','fee','value',
                                  'avg_price','realized_pnl','fees','filled_quantity','stop_price','pnl')
        """), {"tables": list(SEED_TABLES)}).all()
    assert len(rows) == 18  # every money/quantity column of the seed tables
    assert {r.data_type for r in rows} == {"numeric"}, [r for r in rows if r.data_type != "numeric"]
    with engine.connect() as conn:
        floats = conn.execute(sa.text("""
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND data_type IN ('real', 'double precision')
              AND table_name = ANY(:tables)
        """), {"tables": list(SEED_TABLES)}).all()
    assert floats == [], f"float columns in the seed schema: {floats}"


@pytest.mark.parametrize("table", TIMESERIES)
def test_timeseries_tables_are_range_partitioned_by_ts(engine, table):
    # no TimescaleDB on these machines: the native-partitioning path of the migration is the one in force
    with engine.connect() as conn:
        strategy, key = conn.execute(sa.text("""
            SELECT pt.partstrat, a.attname FROM pg_partitioned_table pt
            JOIN pg_class c ON c.oid = pt.partrelid
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
            WHERE c.relname = :t
        """), {"t": table}).one()
        default = conn.execute(sa.text("SELECT to_regclass(:d)"), {"d": f"{table}_default"}).scalar()
    assert (strategy, key) == ("r", "ts")
    assert default is not None


def test_rows_from_a_month_without_partition_move_out_of_default(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO risk_metrics (ts, account, scope, metric, value)
            VALUES ('2019-03-05T10:00:00Z', 'acct-part', 'account', 'var_95', 1.25)
        """))
        where = conn.execute(sa.text(
            "SELECT tableoid::regclass::text FROM risk_metrics WHERE account = 'acct-part'")).scalar()
        assert where == "risk_metrics_default"
        created = conn.execute(sa.text(
            "SELECT tradeloop_ensure_partitions('risk_metrics', '2019-03-01', '2019-03-31')")).scalar()
        assert created == 1
        where, value = conn.execute(sa.text(
            "SELECT tableoid::regclass::text, value FROM risk_metrics WHERE account = 'acct-part'")).one()
    assert where == "risk_metrics_p201903"
    assert value == Decimal("1.25")


def test_decimal_values_round_trip_exactly(engine):
    price = Decimal("64123.123456789012345678")
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO market_data (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            VALUES ('sim', 'EXACT/USD', '1m', now(), :p, :p, :p, :p, 0.000000001, 'exact-1')
        """), {"p": price})
        stored = conn.execute(sa.text("SELECT close FROM market_data WHERE symbol = 'EXACT/USD'")).scalar()
    assert stored == price


def test_fill_upsert_is_idempotent(engine):
    insert = sa.text("""
        INSERT INTO trades (fill_id, client_order_id, account, strategy, exchange, symbol, side, price,
                            quantity, fee, fee_currency, liquidity, ts)
        VALUES ('fill-idem', 'co-1', 'acct', 'sma', 'sim', 'BTC/USDT', 'buy', 100.5, 0.25, 0.01, 'USDT',
                'taker', '2026-11-24T12:00:00Z')
        ON CONFLICT (fill_id, ts) DO NOTHING
    """)
    with engine.begin() as conn:
        conn.execute(insert)
        conn.execute(insert)  # a replayed event
        count = conn.execute(sa.text("SELECT count(*) FROM trades WHERE fill_id = 'fill-idem'")).scalar()
    assert count == 1


def test_constraints_refuse_impossible_orders(engine):
    with pytest.raises(sa.exc.IntegrityError, match="quantity"):
        with engine.begin() as conn:
            conn.execute(sa.text("""
                INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type,
                                    quantity, time_in_force, status, created_at, updated_at)
                VALUES ('bad-qty', 'acct', 's', 'sim', 'BTC/USDT', 'buy', 'market', -1, 'gtc', 'new', now(), now())
            """))


def test_migrations_are_idempotent_and_at_head(pg_url):
    from alembic.script import ScriptDirectory

    from storage import migrations

    migrations.upgrade(pg_url)  # a second `up` runs them again: nothing to do, nothing breaks
    heads = ScriptDirectory.from_config(migrations.alembic_config(pg_url)).get_heads()
    assert migrations.current(pg_url) == ",".join(sorted(heads))


def test_downgrade_and_upgrade_round_trip(stack_settings, pg_url):
    """In a scratch database, so the shared one stays intact."""
    from storage import migrations
    from deploy.stack import postgres

    admin = sa.create_engine(postgres.url(stack_settings, stack_settings.pg_port, "postgres"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS scratch_migrations"))
        conn.execute(sa.text("CREATE DATABASE scratch_migrations"))
    url = postgres.url(stack_settings, stack_settings.pg_port, "scratch_migrations")
    migrations.upgrade(url)
    _downgrade(url)
    scratch = sa.create_engine(url)
    assert not set(SEED_TABLES) & set(sa.inspect(scratch).get_table_names())
    migrations.upgrade(url)
    assert set(SEED_TABLES) <= set(sa.inspect(scratch).get_table_names())
    scratch.dispose()
    admin.dispose()


def _downgrade(url: str) -> None:
    from alembic import command

    from storage.migrations import alembic_config

    command.downgrade(alembic_config(url), "base")
