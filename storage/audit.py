"""audit_log rows of the platform's decisions (trained, promoted, refused, rolled back, re-weighted, tuned).

The event id is derived from what was decided, so a re-run of the same decision adds no second row.
The stream's own events (control actions, risk) go through storage/stream.py's write_audit with the ids
the stream already carries.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from trading.records import stable_id


def decision(conn: sa.Connection, action: str, scope: str, reason: str, details: dict[str, Any], *key: Any,
             actor: str = "ml") -> str:
    """One audit row per deterministic event id (replays add nothing); returns the id."""
    event_id = stable_id("audit", action, scope, *key)
    conn.execute(sa.text("""
        INSERT INTO audit_log (event_id, actor, action, scope, reason, details)
        SELECT :id, :actor, :action, :scope, :reason, CAST(:details AS jsonb)
        WHERE NOT EXISTS (SELECT 1 FROM audit_log WHERE event_id = :id)
    """), {"id": event_id, "actor": actor, "action": action, "scope": scope, "reason": reason,
           "details": json.dumps(details, default=str, sort_keys=True)})
    return event_id
