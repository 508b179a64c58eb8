"""ML layer: versioned feature sets, point-in-time feature rows and labels.

Feature rows are long by (feature_set, exchange, symbol, ts) with the values in one jsonb object keyed
by feature name: a new feature set (new hash) adds rows beside the old ones instead of altering
columns, so a model's training data stays reproducible from its recorded hash.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE ml_feature_sets (
            feature_set  text        PRIMARY KEY,
            version      text        NOT NULL,
            names        jsonb       NOT NULL,
            params       jsonb       NOT NULL,
            symbols      jsonb       NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("""
        CREATE TABLE ml_features (
            feature_set  text        NOT NULL REFERENCES ml_feature_sets (feature_set),
            exchange     text        NOT NULL,
            symbol       text        NOT NULL,
            ts           timestamptz NOT NULL,
            vals         jsonb       NOT NULL,
            computed_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (feature_set, exchange, symbol, ts)
        )
    """)
    op.execute("CREATE INDEX ml_features_ts ON ml_features (feature_set, exchange, ts)")
    op.execute("""
        CREATE TABLE ml_labels (
            label_set    text             NOT NULL,
            exchange     text             NOT NULL,
            symbol       text             NOT NULL,
            ts           timestamptz      NOT NULL,
            fwd_ret_1    double precision NOT NULL,
            fwd_ret      double precision NOT NULL,
            tb_label     smallint         NOT NULL CHECK (tb_label IN (-1, 0, 1)),
            tb_t1        timestamptz      NOT NULL CHECK (tb_t1 > ts),
            computed_at  timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (label_set, exchange, symbol, ts)
        )
    """)
    op.execute("CREATE INDEX ml_labels_ts ON ml_labels (label_set, exchange, ts)")


def downgrade() -> None:
    for name in ("ml_labels", "ml_features", "ml_feature_sets"):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
