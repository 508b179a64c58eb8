"""Reconciliation with the venue: one row per run (what differed, the verdict) and the balances adopted
from the venue at the first successful start (the baseline the expected balances are summed from).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE reconciliation_runs (
            run_id       text        PRIMARY KEY,
            account      text        NOT NULL,
            mode         text        NOT NULL CHECK (mode IN ('paper', 'sandbox', 'live', 'backtest')),
            ts           timestamptz NOT NULL,
            kind         text        NOT NULL CHECK (kind IN ('start', 'periodic')),
            verdict      text        NOT NULL CHECK (verdict IN ('ok', 'reducing', 'halted')),
            reason       text        NOT NULL DEFAULT '',
            differences  jsonb       NOT NULL DEFAULT '[]'::jsonb,
            proposals    jsonb       NOT NULL DEFAULT '[]'::jsonb,
            balances     jsonb,      -- the venue's balances when the run compared them (a re-baseline adopts them)
            recorded_at  timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX reconciliation_runs_account_ts ON reconciliation_runs (account, ts)")
    # a new baseline (an operator accepting a deposit) is a new set of rows; the latest ts per account counts
    op.execute("""
        CREATE TABLE balance_baselines (
            account      text        NOT NULL,
            ts           timestamptz NOT NULL,
            asset        text        NOT NULL,
            quantity     numeric     NOT NULL,
            adopted_by   text        NOT NULL DEFAULT 'reconciler',
            PRIMARY KEY (account, ts, asset)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS balance_baselines")
    op.execute("DROP TABLE IF EXISTS reconciliation_runs")
