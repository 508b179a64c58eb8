"""The gateway's identities: people (``users``), programs (``api_keys``) and the refresh tokens issued to both.

Nothing here holds a usable secret: passwords are argon2 hashes, API key secrets and refresh tokens are
SHA-256 digests of 32 random bytes (storage/auth.py says why that is enough for them). A refresh token belongs
to a family (one login); rotating it marks the old row ``rotated_at``, and a rotated token used again revokes
the whole family (someone holds a copy).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE users (
            username       text        PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
            password_hash  text        NOT NULL,
            role           text        NOT NULL CHECK (role IN ('viewer', 'trader', 'risk_officer', 'admin')),
            disabled       boolean     NOT NULL DEFAULT false,
            must_change    boolean     NOT NULL DEFAULT false,
            created_at     timestamptz NOT NULL DEFAULT now(),
            failed_logins  integer     NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
            locked_until   timestamptz,
            accounts       text[]      -- the trading accounts the user may see and act on; NULL: every one
        )
    """)
    op.execute("""
        CREATE TABLE api_keys (
            key_id        text        PRIMARY KEY,
            name          text        NOT NULL,
            owner         text        NOT NULL REFERENCES users (username),
            secret_hash   text        NOT NULL,
            scopes        text[]      NOT NULL CHECK (scopes <@ ARRAY['read', 'trade', 'risk', 'admin']::text[]),
            created_at    timestamptz NOT NULL DEFAULT now(),
            last_used_at  timestamptz,
            revoked_at    timestamptz
        )
    """)
    op.execute("CREATE UNIQUE INDEX api_keys_owner_name ON api_keys (owner, name) WHERE revoked_at IS NULL")
    op.execute("""
        CREATE TABLE refresh_tokens (
            token_hash  text        PRIMARY KEY,
            family      text        NOT NULL,
            subject     text        NOT NULL,
            kind        text        NOT NULL CHECK (kind IN ('user', 'api_key')),
            scopes      text[],     -- the scopes the login asked for; NULL: all of the role's
            issued_at   timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL,
            rotated_at  timestamptz,
            revoked_at  timestamptz
        )
    """)
    op.execute("CREATE INDEX refresh_tokens_family ON refresh_tokens (family)")
    op.execute("CREATE INDEX refresh_tokens_subject ON refresh_tokens (kind, subject)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS refresh_tokens")
    op.execute("DROP TABLE IF EXISTS api_keys")
    op.execute("DROP TABLE IF EXISTS users")
