"""The order management system: every state an order can be in, an append-only order_events journal,
persisted parent orders of the router, and the sandbox mode.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATUSES = ("new", "submitting", "ack", "partially_filled", "cancel_pending", "unknown", "filled", "canceled",
            "rejected", "expired")
OPEN = ("new", "submitting", "ack", "partially_filled", "cancel_pending", "unknown")
MODES = ("paper", "sandbox", "live", "backtest")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.execute("ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check")
    op.execute(f"ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ({_in(STATUSES)}))")
    for table in ("orders", "trades"):
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_mode_check")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_mode_check CHECK (mode IN ({_in(MODES)}))")
    # the venue's own id, and orders found at the venue that nobody here sent (reconciliation)
    op.execute("ALTER TABLE orders ADD COLUMN IF NOT EXISTS venue_order_id text")
    op.execute("ALTER TABLE orders ADD COLUMN IF NOT EXISTS external boolean NOT NULL DEFAULT false")
    op.execute("DROP INDEX IF EXISTS orders_open")
    op.execute(f"CREATE INDEX orders_open ON orders (account, symbol) WHERE status IN ({_in(OPEN)})")

    # every transition of every order, in the order it was recorded; never updated, never deleted
    op.execute(f"""
        CREATE TABLE order_events (
            event_no          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            client_order_id   text        NOT NULL,
            account           text        NOT NULL,
            status            text        NOT NULL CHECK (status IN ({_in(STATUSES)})),
            filled_quantity   numeric     NOT NULL CHECK (filled_quantity >= 0),
            remaining_quantity numeric    NOT NULL CHECK (remaining_quantity >= 0),
            reason            text,
            ts                timestamptz NOT NULL,
            recorded_at       timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX order_events_order ON order_events (client_order_id, event_no)")
    op.execute("""
        CREATE FUNCTION order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'order_events is append-only: % refused', TG_OP;
        END $$
    """)
    op.execute("CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events"
               " FOR EACH ROW EXECUTE FUNCTION order_events_append_only()")

    # the router's parent orders: a target change worked as market/limit/TWAP/VWAP/Iceberg children
    op.execute("""
        CREATE TABLE parent_orders (
            parent_id        text        PRIMARY KEY,
            account          text        NOT NULL,
            strategy         text        NOT NULL,
            exchange         text        NOT NULL,
            symbol           text        NOT NULL,
            side             text        NOT NULL CHECK (side IN ('buy', 'sell')),
            algorithm        text        NOT NULL,
            quantity         numeric     NOT NULL CHECK (quantity > 0),
            arrival_price    numeric     NOT NULL CHECK (arrival_price > 0),
            params           jsonb       NOT NULL DEFAULT '{}',
            status           text        NOT NULL CHECK (status IN ('working', 'done', 'canceled', 'halted')),
            filled_quantity  numeric     NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0),
            reason           text,
            mode             text        NOT NULL CHECK (mode IN ('paper', 'sandbox', 'live', 'backtest')),
            created_at       timestamptz NOT NULL,
            updated_at       timestamptz NOT NULL
        )
    """)
    op.execute("CREATE INDEX parent_orders_working ON parent_orders (account) WHERE status = 'working'")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS parent_orders")
    op.execute("DROP TABLE IF EXISTS order_events")
    op.execute("DROP FUNCTION IF EXISTS order_events_append_only()")
    op.execute("ALTER TABLE orders DROP COLUMN IF EXISTS external")
    op.execute("ALTER TABLE orders DROP COLUMN IF EXISTS venue_order_id")
