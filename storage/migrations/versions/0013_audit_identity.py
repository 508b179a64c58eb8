"""audit_log records who and from where, and cannot be rewritten: columns ``identity`` (the authenticated
identity, e.g. a signed control message's signer) and ``source`` (its address or transport), nullable for the
rows written before; a row trigger refusing UPDATE and DELETE.

The trigger is defined on the partitioned table, so PostgreSQL clones it onto every partition, the default one
and each month attached later by tradeloop_ensure_partitions (with TimescaleDB, onto every chunk). Retention
drops whole partitions or chunks, which no row trigger sees -- and the audit log has no retention anyway
(storage/lifecycle.py). The one row movement that remains is tradeloop_ensure_partitions moving a month's rows
out of the default partition into the partition it has just created: it is redefined here to announce that
move in a transaction-local setting, and the trigger lets exactly that DELETE through when the current role owns
audit_log (the owner could drop the trigger anyway; a role that does not own it -- the application's, once it
has its own -- is refused even if it sets the same setting). TRUNCATE is a privilege the application's role must
not be granted (row triggers do not see it).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_log_default'
       AND current_setting('tradeloop.partition_move', true) = TG_TABLE_NAME
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = 'audit_log'::regclass), 'MEMBER')
    THEN
        RETURN OLD;  -- tradeloop_ensure_partitions re-inserts the row into its month's partition, same statement
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
"""

# 0001's function, with the move out of the default partition announced to the append-only trigger
ENSURE_PARTITIONS = """
CREATE OR REPLACE FUNCTION tradeloop_ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m       timestamptz := date_trunc('month', from_ts, 'UTC');
    next_m  timestamptz;
    part    text;
    created integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid
                   WHERE c.relname = parent) THEN
        RETURN 0;  -- a hypertable (TimescaleDB manages chunks) or a plain table
    END IF;
    -- serialise concurrent writers creating the same month
    PERFORM pg_advisory_xact_lock(hashtext('tradeloop_partitions:' || parent));
    WHILE m <= to_ts LOOP
        next_m := m + interval '1 month';
        part := format('%s_p%s', parent, to_char(m AT TIME ZONE 'UTC', 'YYYYMM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
            -- rows that landed in the default partition for this month move to their own partition; an
            -- append-only table's trigger (audit_log, 0013) lets this one DELETE through
            PERFORM set_config('tradeloop.partition_move', parent || '_default', true);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE ts >= %L AND ts < %L RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved', parent || '_default', m, next_m, part);
            PERFORM set_config('tradeloop.partition_move', '', true);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           parent, part, m, next_m);
            created := created + 1;
        END IF;
        m := next_m;
    END LOOP;
    RETURN created;
END $$;
"""


def upgrade() -> None:
    op.execute("ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS identity text")
    op.execute("ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS source text")
    op.execute(ENSURE_PARTITIONS)
    op.execute(APPEND_ONLY)
    op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
               " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    spec = importlib.util.spec_from_file_location("seed_0001", Path(__file__).with_name("0001_seed_schema.py"))
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    op.execute(seed.ENSURE_PARTITIONS)
    op.execute("ALTER TABLE audit_log DROP COLUMN IF EXISTS source")
    op.execute("ALTER TABLE audit_log DROP COLUMN IF EXISTS identity")
