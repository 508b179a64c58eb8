"""Signals of the stream: every strategy decision, and every ML score with the model version that made it.

One row per signal id (deterministic: account, slot, symbol, decision time, live/shadow), so a replayed
batch adds nothing.  ``shadow`` rows are a challenger's scores in A/B shadow mode: recorded on the same
bars as the champion's, never traded (ml/shadow.py compares the two).  A plain table rather than a
partitioned one: the primary key must be the signal id alone for idempotent writes, and a partitioned
table's keys must include the partition column.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE signals (
            signal_id      text             PRIMARY KEY,
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
        )
    """)
    op.execute("CREATE INDEX signals_account_strategy_ts ON signals (account, strategy, ts)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS signals CASCADE")
