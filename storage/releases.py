"""Strategy releases (``strategy_releases``) and the stream's run-time changes (``stream_runtime``).

A release is a strategy's parameter set with a number and the evidence it was chosen on.  At most one
release per strategy is ``live`` (what the stream trades); promoting retires the live one, and a rollback
gives ``live`` back to the most recently retired release.  Every decision (promoted, refused, rolled back,
shadow started/stopped) is an ``audit_log`` row in the same transaction as the change it records.

Functions take the caller's SQLAlchemy connection (one transaction: a decision and its audit row are
written together or not at all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from storage.stream import ns_of, ts_of, write_audit
from trading.records import stable_id

STATUSES = ("candidate", "refused", "live", "retired", "rolled_back")


class ReleaseError(ValueError):
    """An unknown strategy or version, or a change the release's status does not allow."""


@dataclass(frozen=True)
class Release:
    account: str
    strategy: str
    version: int
    params: dict[str, Any]
    evidence: dict[str, Any]
    source: str
    status: str
    shadow: bool
    reason: str
    created_at: datetime
    promoted_at: datetime | None

    @property
    def promoted_ns(self) -> int:
        return ns_of(self.promoted_at) if self.promoted_at is not None else 0

    def brief(self) -> dict[str, Any]:
        """JSON-ready summary (no evidence)."""
        return {"account": self.account, "strategy": self.strategy, "version": self.version, "params": self.params, "status": self.status,
                "shadow": self.shadow, "source": self.source, "reason": self.reason,
                "created_at": self.created_at.isoformat(),
                "promoted_at": self.promoted_at.isoformat() if self.promoted_at else None}


_COLS = "account, strategy, version, params, evidence, source, status, shadow, reason, created_at, promoted_at"


def _release(row: Any) -> Release:
    return Release(row[0], row[1], int(row[2]), dict(row[3]), dict(row[4]), row[5], row[6], bool(row[7]), row[8], row[9],
                   row[10])


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def audit(conn: sa.Connection, account: str, action: str, strategy: str, actor: str, reason: str, details: dict,
          now_ns: int) -> None:
    """One audit_log row of a release decision (scope ``account:<a>/strategy:<s>``)."""
    write_audit(conn, stable_id("release", account, action, strategy, actor, now_ns, _json(details)), now_ns, actor,
                action, f"account:{account}/strategy:{strategy}", reason, details)


# -- reads ---------------------------------------------------------------------------------------------

def releases(conn: sa.Connection, account: str, strategy: str | None = None) -> list[Release]:
    """Every release of the account (of ``strategy``), by strategy and version."""
    sql = f"SELECT {_COLS} FROM strategy_releases WHERE account = :a"
    args: dict[str, Any] = {"a": account}
    if strategy is not None:
        sql += " AND strategy = :s"
        args["s"] = strategy
    return [_release(r) for r in conn.execute(sa.text(sql + " ORDER BY strategy, version"), args)]


def get_release(conn: sa.Connection, account: str, strategy: str, version: int) -> Release:
    """The release, or ReleaseError naming what exists."""
    row = conn.execute(sa.text(f"SELECT {_COLS} FROM strategy_releases WHERE account = :a AND strategy = :s"
                               " AND version = :v"), {"a": account, "s": strategy, "v": int(version)}).fetchone()
    if row is not None:
        return _release(row)
    known = [r.version for r in releases(conn, account, strategy)]
    if not known:
        names = sorted({r.strategy for r in releases(conn, account)})
        raise ReleaseError(f"account {account!r} has no releases of strategy {strategy!r} (strategies with "
                           f"releases: {', '.join(names) or 'none'})")
    raise ReleaseError(f"strategy {strategy!r} has no release v{version} (versions: "
                       f"{', '.join(f'v{v}' for v in known)})")


def live_release(conn: sa.Connection, account: str, strategy: str) -> Release | None:
    row = conn.execute(sa.text(f"SELECT {_COLS} FROM strategy_releases WHERE account = :a AND strategy = :s"
                               " AND status = 'live'"), {"a": account, "s": strategy}).fetchone()
    return _release(row) if row is not None else None


def running(conn: sa.Connection, account: str) -> dict[str, dict[str, Release]]:
    """strategy -> {"live": Release, "shadow": Release} (either may be absent): what the stream polls."""
    out: dict[str, dict[str, Release]] = {}
    for r in conn.execute(sa.text(f"SELECT {_COLS} FROM strategy_releases WHERE account = :a AND (status = 'live' OR shadow)"),
                          {"a": account}):
        rel = _release(r)
        if rel.status == "live":
            out.setdefault(rel.strategy, {})["live"] = rel
        if rel.shadow:
            out.setdefault(rel.strategy, {})["shadow"] = rel
    return out


# -- writes --------------------------------------------------------------------------------------------

def _lock(conn: sa.Connection, account: str, strategy: str) -> None:
    """Serialise release changes of one strategy (version numbers, the one-live rule) across processes."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('strategy_releases:' || :a || ':' || :s))"),
                 {"a": account, "s": strategy})


def create_release(conn: sa.Connection, account: str, strategy: str, params: dict[str, Any],
                   evidence: dict[str, Any], *, source: str) -> Release:
    """A new ``candidate`` release with the next version number."""
    _lock(conn, account, strategy)
    version = conn.execute(sa.text("SELECT coalesce(max(version), 0) + 1 FROM strategy_releases"
                                   " WHERE account = :a AND strategy = :s"), {"a": account, "s": strategy}).scalar_one()
    conn.execute(sa.text("INSERT INTO strategy_releases (account, strategy, version, params, evidence, source)"
                         " VALUES (:a, :s, :v, CAST(:p AS jsonb), CAST(:e AS jsonb), :src)"),
                 {"a": account, "s": strategy, "v": version, "p": _json(params), "e": _json(evidence), "src": source})
    return get_release(conn, account, strategy, version)


def _set(conn: sa.Connection, rel: Release, **cols: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in cols)
    conn.execute(sa.text(f"UPDATE strategy_releases SET {sets} WHERE account = :_a AND strategy = :_s AND version = :_v"),
                 {**cols, "_a": rel.account, "_s": rel.strategy, "_v": rel.version})


def seed_release(conn: sa.Connection, account: str, strategy: str, params: dict[str, Any], *, actor: str,
                 now_ns: int | None = None, reason: str = "configured parameters of the stream") -> Release | None:
    """Record what the stream runs as release v1 (``live``, promoted at ``now_ns``) of a strategy that has no
    release yet, so that the gate has a running release to compare a candidate with.  None when releases
    exist already."""
    _lock(conn, account, strategy)
    if conn.execute(sa.text("SELECT 1 FROM strategy_releases WHERE account = :a AND strategy = :s LIMIT 1"),
                    {"a": account, "s": strategy}).first():
        return None
    now_ns = now_ns or time.time_ns()
    rel = create_release(conn, account, strategy, params, {"source": reason}, source="stream")
    _set(conn, rel, status="live", promoted_at=ts_of(now_ns), reason=reason)
    audit(conn, account, "release_seeded", strategy, actor, reason, {"version": rel.version, "params": params}, now_ns)
    return get_release(conn, account, strategy, rel.version)


def promote(conn: sa.Connection, account: str, strategy: str, version: int, *, actor: str, reason: str,
            force: bool = False, evidence: dict[str, Any] | None = None,
            now_ns: int | None = None) -> tuple[int | None, int]:
    """Make ``version`` the live release (the live one is retired).  A refused release needs ``force``.
    Returns (previous live version or None, new live version)."""
    _lock(conn, account, strategy)
    rel = get_release(conn, account, strategy, version)
    if rel.status == "live":
        raise ReleaseError(f"{strategy} v{version} is already the live release")
    if rel.status == "refused" and not force:
        raise ReleaseError(f"{strategy} v{version} was refused by the gate ({rel.reason}); "
                           "promote it anyway with --force")
    now_ns = now_ns or time.time_ns()
    before = live_release(conn, account, strategy)
    if before is not None:
        _set(conn, before, status="retired")
    # a release that goes live is no longer a shadow: the stream would run it twice
    _set(conn, rel, status="live", shadow=False, promoted_at=ts_of(now_ns), reason=reason)
    details: dict[str, Any] = {"version": version, "previous": before.version if before else None,
                               "params": rel.params, "forced": force and rel.status == "refused"}
    if evidence is not None:
        details["evidence"] = evidence
    audit(conn, account, "release_promoted", strategy, actor, reason, details, now_ns)
    return (before.version if before else None), version


def refuse(conn: sa.Connection, account: str, strategy: str, version: int, *, actor: str, reason: str,
           evidence: dict[str, Any] | None = None, now_ns: int | None = None) -> None:
    """The gate's no: the candidate stays on record as ``refused`` with the reason."""
    _lock(conn, account, strategy)
    rel = get_release(conn, account, strategy, version)
    if rel.status != "candidate":
        raise ReleaseError(f"{strategy} v{version} is {rel.status}, not a candidate")
    _set(conn, rel, status="refused", reason=reason)
    audit(conn, account, "release_refused", strategy, actor, reason,
          {"version": version, "params": rel.params, **({"evidence": evidence} if evidence is not None else {})},
          now_ns or time.time_ns())


def rollback(conn: sa.Connection, account: str, strategy: str, *, actor: str, reason: str,
             now_ns: int | None = None) -> tuple[int, int]:
    """Take the live release back and make the most recently retired one live again.
    Returns (rolled-back version, restored version)."""
    _lock(conn, account, strategy)
    live = live_release(conn, account, strategy)
    if live is None:
        if not releases(conn, account, strategy):
            get_release(conn, account, strategy, 1)  # raises naming the strategies that have releases
        raise ReleaseError(f"strategy {strategy!r} has no live release to roll back")
    prev = conn.execute(sa.text(f"SELECT {_COLS} FROM strategy_releases WHERE account = :a AND strategy = :s"
                                " AND status = 'retired' ORDER BY promoted_at DESC NULLS LAST, version DESC LIMIT 1"),
                        {"a": account, "s": strategy}).fetchone()
    if prev is None:
        raise ReleaseError(f"{strategy} v{live.version} is live and no earlier release was ever promoted: "
                           "nothing to roll back to")
    back = _release(prev)
    now_ns = now_ns or time.time_ns()
    _set(conn, live, status="rolled_back", reason=reason)
    # promoted_at moves to now: the rollback is the newest decision about the slots running this strategy
    _set(conn, back, status="live", shadow=False, promoted_at=ts_of(now_ns))
    audit(conn, account, "release_rolled_back", strategy, actor, reason,
          {"from_version": live.version, "to_version": back.version, "params": back.params}, now_ns)
    return live.version, back.version


def set_shadow(conn: sa.Connection, account: str, strategy: str, version: int | None, *, actor: str, reason: str,
               now_ns: int | None = None) -> int | None:
    """Run ``version`` in shadow beside the live release (None: stop the shadow).  Returns the version
    that was in shadow before, if any."""
    _lock(conn, account, strategy)
    if version is not None:
        rel = get_release(conn, account, strategy, version)
        if rel.status == "live":
            raise ReleaseError(f"{strategy} v{version} is the live release; shadow runs a release beside it")
    elif not releases(conn, account, strategy):
        get_release(conn, account, strategy, 1)  # raises naming the strategies that have releases
    before = running(conn, account).get(strategy, {}).get("shadow")
    if before is not None:
        _set(conn, before, shadow=False)
    if version is not None:
        _set(conn, rel, shadow=True)
    audit(conn, account, "release_shadow", strategy, actor, reason,
          {"version": version, "previous": before.version if before else None}, now_ns or time.time_ns())
    return before.version if before else None


# -- the stream's run-time changes ------------------------------------------------------------------------

@dataclass
class Runtime:
    """An account's persisted run-time changes."""

    slots: dict[str, tuple[str, dict[str, Any], int]] = field(default_factory=dict)  # slot -> (strategy, params, ts ns)
    limits: dict[str, Any] = field(default_factory=dict)  # accumulated limit overrides (deep-merged)


def save_slot(conn: sa.Connection, account: str, slot: str, strategy: str, params: dict[str, Any], *, actor: str,
              reason: str, ts_ns: int) -> None:
    """An operator's strategy swap of ``slot``: the slot runs this after a restart too."""
    conn.execute(sa.text("INSERT INTO stream_runtime (account, kind, key, value, actor, reason, ts)"
                         " VALUES (:a, 'slot', :k, CAST(:v AS jsonb), :who, :r, :t) ON CONFLICT (account, kind, key)"
                         " DO UPDATE SET value = EXCLUDED.value, actor = EXCLUDED.actor, reason = EXCLUDED.reason,"
                         " ts = EXCLUDED.ts"),
                 {"a": account, "k": slot, "v": _json({"strategy": strategy, "params": params}), "who": actor,
                  "r": reason, "t": ts_of(ts_ns)})


def save_limits(conn: sa.Connection, account: str, overrides: dict[str, Any], *, actor: str, reason: str,
                ts_ns: int) -> None:
    """The account's limit overrides as they stand after the latest change (all changes merged)."""
    conn.execute(sa.text("INSERT INTO stream_runtime (account, kind, key, value, actor, reason, ts)"
                         " VALUES (:a, 'limits', '', CAST(:v AS jsonb), :who, :r, :t) ON CONFLICT (account, kind, key)"
                         " DO UPDATE SET value = EXCLUDED.value, actor = EXCLUDED.actor, reason = EXCLUDED.reason,"
                         " ts = EXCLUDED.ts"),
                 {"a": account, "v": _json(overrides), "who": actor, "r": reason, "t": ts_of(ts_ns)})


def load_runtime(conn: sa.Connection, account: str) -> Runtime:
    out = Runtime()
    for kind, key, value, ts in conn.execute(sa.text("SELECT kind, key, value, ts FROM stream_runtime WHERE account = :a"),
                                             {"a": account}):
        if kind == "slot":
            out.slots[key] = (value["strategy"], dict(value.get("params") or {}), ns_of(ts))
        else:
            out.limits = dict(value)
    return out
