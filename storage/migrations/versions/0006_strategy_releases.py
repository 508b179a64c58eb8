"""Strategy releases and the stream's run-time changes.

``strategy_releases``: a strategy's parameters as numbered releases (strategy, version, params, the
evidence they were chosen on), per account: one worker trades one account, and its releases are its own.
Status: ``candidate`` (registered, not decided), ``refused`` (the gate said no), ``live`` (the one the
stream trades; at most one per account and strategy), ``retired`` (was live, replaced by a promotion:
rollback returns to the latest of these), ``rolled_back`` (was live, taken back).  ``shadow`` marks the
one release per account and strategy the stream runs beside the live one (decisions recorded, never sent).

``stream_runtime``: what an operator changed in a running worker (strategy swaps per slot, limit
overrides), so that a restarted worker comes back as it was rather than as configured.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE strategy_releases (
            account      text        NOT NULL,
            strategy     text        NOT NULL,
            version      integer     NOT NULL CHECK (version > 0),
            params       jsonb       NOT NULL,
            evidence     jsonb       NOT NULL DEFAULT '{}'::jsonb,
            source       text        NOT NULL,
            status       text        NOT NULL DEFAULT 'candidate'
                         CHECK (status IN ('candidate', 'refused', 'live', 'retired', 'rolled_back')),
            shadow       boolean     NOT NULL DEFAULT false,
            reason       text        NOT NULL DEFAULT '',
            created_at   timestamptz NOT NULL DEFAULT now(),
            promoted_at  timestamptz,
            PRIMARY KEY (account, strategy, version)
        )
    """)
    op.execute("CREATE UNIQUE INDEX strategy_releases_one_live ON strategy_releases (account, strategy) WHERE status = 'live'")
    op.execute("CREATE UNIQUE INDEX strategy_releases_one_shadow ON strategy_releases (account, strategy) WHERE shadow")
    op.execute("""
        CREATE TABLE stream_runtime (
            account     text        NOT NULL,
            kind        text        NOT NULL CHECK (kind IN ('slot', 'limits')),
            key         text        NOT NULL,
            value       jsonb       NOT NULL,
            actor       text        NOT NULL,
            reason      text        NOT NULL DEFAULT '',
            ts          timestamptz NOT NULL,
            PRIMARY KEY (account, kind, key)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS stream_runtime")
    op.execute("DROP TABLE IF EXISTS strategy_releases")
