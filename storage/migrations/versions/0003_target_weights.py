"""Target weights of the portfolio optimiser, one row per (portfolio, as_of, symbol), with the model's
inputs and the solver status.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE target_weights (
            portfolio        text        NOT NULL,
            as_of            date        NOT NULL,
            symbol           text        NOT NULL,
            weight           numeric     NOT NULL,
            model            text        NOT NULL,
            estimator        text        NOT NULL,
            solver           text        NOT NULL,
            solver_status    text        NOT NULL,
            expected_return  double precision,
            expected_vol     double precision,
            solve_time_s     double precision,
            inputs           jsonb       NOT NULL,
            run_id           text,
            created_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (portfolio, as_of, symbol)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS target_weights")
