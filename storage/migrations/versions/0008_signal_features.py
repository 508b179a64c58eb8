"""Live signals carry the feature values the model scored, so drift (PSI) is measured on what the stream
really saw, against the champion's training window.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: rule-based strategies and shadow rows carry none, and rows written before this have none
    op.execute("ALTER TABLE signals ADD COLUMN IF NOT EXISTS features jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE signals DROP COLUMN IF EXISTS features")
