"""audit_log (migration 0013) against the real PostgreSQL: identity and source columns; UPDATE and DELETE refused
on the partitioned table and on every partition; partition maintenance (rows moved out of the default partition,
retention dropping whole partitions) still works; a role that does not own the table cannot borrow the move."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from storage.lifecycle import drop_older_than
from storage.stream import ns_of, write_audit


def _ns(*ymd) -> int:
    return ns_of(datetime(*ymd, tzinfo=timezone.utc))


def _refused(conn, sql: str, params: dict | None = None) -> str:
    with pytest.raises(sa.exc.DBAPIError) as exc:
        with conn.begin_nested():
            conn.execute(sa.text(sql), params or {})
    return str(exc.value.orig)


def test_identity_source_and_no_update_or_delete(engine):
    with engine.connect() as conn, conn.begin() as tx:
        write_audit(conn, "t-aud-1", _ns(2026, 12, 8), "user:alice", "kill_switch", "account:x", "why", {"a": 1},
                    identity="user:alice", source="10.1.2.3")
        write_audit(conn, "t-aud-2", _ns(2026, 12, 8), "maintenance", "retention_drop", "storage", "", {})
        rows = conn.execute(sa.text("SELECT event_id, identity, source FROM audit_log WHERE event_id LIKE 't-aud-%'"
                                    " ORDER BY 1")).all()
        assert [tuple(r) for r in rows] == [("t-aud-1", "user:alice", "10.1.2.3"), ("t-aud-2", None, None)]
        part = conn.execute(sa.text("SELECT tableoid::regclass::text FROM audit_log WHERE event_id='t-aud-1'")).scalar()
        for sql in ("UPDATE audit_log SET reason = 'rewritten' WHERE event_id = 't-aud-1'",
                    "DELETE FROM audit_log WHERE event_id = 't-aud-1'",
                    f"UPDATE {part} SET actor = 'someone' WHERE event_id = 't-aud-1'",
                    f"DELETE FROM {part} WHERE event_id = 't-aud-1'"):
            assert "audit_log is append-only" in _refused(conn, sql), sql
        # a replayed write of the same event adds nothing and changes nothing (ON CONFLICT DO NOTHING, no UPDATE)
        write_audit(conn, "t-aud-1", _ns(2026, 12, 8), "mallory", "kill_switch", "account:x", "other", {},
                    identity="mallory", source="x")
        assert conn.execute(sa.text("SELECT actor FROM audit_log WHERE event_id='t-aud-1'")).scalar() == "user:alice"
        tx.rollback()


def test_rows_move_out_of_the_default_partition_and_stay_protected(engine):
    with engine.connect() as conn, conn.begin() as tx:
        if conn.execute(sa.text("SELECT to_regclass('audit_log_default')")).scalar() is None:
            pytest.skip("audit_log is a hypertable here (no default partition)")
        write_audit(conn, "t-aud-move", _ns(2033, 5, 17), "ml", "promoted", "model:x", "", {},
                    identity="svc", source="dagster")
        where = "SELECT tableoid::regclass::text FROM audit_log WHERE event_id='t-aud-move'"
        assert conn.execute(sa.text(where)).scalar() == "audit_log_default"
        assert "append-only" in _refused(conn, "DELETE FROM audit_log_default WHERE event_id='t-aud-move'")
        created = conn.execute(sa.text("SELECT tradeloop_ensure_partitions('audit_log', '2033-05-01', '2033-05-01')"))
        assert created.scalar() == 1
        assert conn.execute(sa.text(where)).scalar() == "audit_log_p203305"
        assert conn.execute(sa.text("SELECT identity, source FROM audit_log WHERE event_id='t-aud-move'")).one() == \
            ("svc", "dagster")
        # the setting is cleared after the move, and the new partition carries the trigger
        assert conn.execute(sa.text("SELECT current_setting('tradeloop.partition_move', true)")).scalar() == ""
        assert "append-only" in _refused(conn, "DELETE FROM audit_log_p203305")
        assert "append-only" in _refused(conn, "UPDATE audit_log_p203305 SET reason='x'")
        tx.rollback()


def test_retention_still_drops_whole_partitions(engine):
    with engine.connect() as conn, conn.begin() as tx:
        if conn.execute(sa.text("SELECT to_regclass('audit_log_default')")).scalar() is None:
            pytest.skip("audit_log is a hypertable here")
        conn.execute(sa.text("SELECT tradeloop_ensure_partitions('audit_log', '1990-01-01', '1990-01-01')"))
        write_audit(conn, "t-aud-old", _ns(1990, 1, 5), "ml", "trained", "model:x", "", {})
        dropped = drop_older_than(conn, "audit_log", datetime(1990, 2, 1, tzinfo=timezone.utc))
        assert [(d.name, d.rows) for d in dropped] == [("audit_log_p199001", 1)]
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE event_id='t-aud-old'")).scalar() == 0
        tx.rollback()


def test_a_role_that_does_not_own_audit_log_cannot_borrow_the_move(engine):
    with engine.connect() as conn, conn.begin() as tx:
        if conn.execute(sa.text("SELECT to_regclass('audit_log_default')")).scalar() is None:
            pytest.skip("audit_log is a hypertable here")
        conn.execute(sa.text("CREATE ROLE tradeloop_test_app NOLOGIN"))
        conn.execute(sa.text("GRANT SELECT, INSERT, UPDATE, DELETE ON audit_log, audit_log_default "
                             "TO tradeloop_test_app"))
        write_audit(conn, "t-aud-app", _ns(2034, 3, 1), "x", "y", "z", "", {})  # lands in the default partition
        conn.execute(sa.text("SET LOCAL ROLE tradeloop_test_app"))
        write_audit(conn, "t-aud-app2", _ns(2034, 3, 2), "x", "y", "z", "", {})  # the app role may append
        conn.execute(sa.text("SELECT set_config('tradeloop.partition_move', 'audit_log_default', true)"))
        assert "append-only" in _refused(conn, "DELETE FROM audit_log_default WHERE event_id LIKE 't-aud-app%'")
        assert "append-only" in _refused(conn, "UPDATE audit_log SET reason='x' WHERE event_id LIKE 't-aud-app%'")
        tx.rollback()
