"""An index on market_data_clean by (symbol, interval, ts): price look-ups "the last bar of this symbol before
this moment" across exchanges (the execution-quality mart's arrival and decision prices) cannot use the primary
key, whose first column is the exchange, and scanned the whole table once per order.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS market_data_clean_symbol_ts ON market_data_clean (symbol, interval, ts)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS market_data_clean_symbol_ts")
