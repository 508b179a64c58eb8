"""The gateway's identities in PostgreSQL: ``users``, ``api_keys``, ``refresh_tokens`` (migration 0012).

Only hashes are stored. Passwords: argon2 (orchestration/gateway/passwords.py), slow on purpose because people
choose guessable ones. API key secrets and refresh tokens: SHA-256 of 32 random bytes -- with 256 bits of
entropy there is nothing to guess, so a slow hash would add cost (every client-credentials exchange, every
refresh) and no safety; a fast digest also lets a refresh token be found by its hash (the primary key).

Functions take the caller's SQLAlchemy connection, so a check and its change share one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import sqlalchemy as sa


class AuthStoreError(ValueError):
    """A one-line, secret-free refusal: an existing user or key name, an unknown user."""


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: str
    disabled: bool
    must_change: bool
    created_at: datetime
    failed_logins: int
    locked_until: datetime | None
    accounts: tuple[str, ...] | None = None  # None: every account

    def brief(self) -> dict[str, Any]:
        """Everything but the hash: what lists, the API and audit rows may show."""
        return {"username": self.username, "role": self.role, "disabled": self.disabled,
                "must_change": self.must_change, "created_at": self.created_at.isoformat(),
                "locked_until": self.locked_until.isoformat() if self.locked_until else None,
                "accounts": list(self.accounts) if self.accounts is not None else None}


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    owner: str
    secret_hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def brief(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "owner": self.owner, "scopes": list(self.scopes),
                "created_at": self.created_at.isoformat(),
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


_USER_COLS = ("username, password_hash, role, disabled, must_change, created_at, failed_logins, locked_until,"
              " accounts")
_KEY_COLS = "key_id, name, owner, secret_hash, scopes, created_at, last_used_at, revoked_at"


def _user(row: Any) -> User:
    r = list(row)
    r[8] = tuple(r[8]) if r[8] is not None else None
    return User(*r)


def _key(row: Any) -> ApiKey:
    r = list(row)
    r[4] = tuple(r[4] or ())
    return ApiKey(*r)


# ---- users ----------------------------------------------------------------------------------------------
def add_user(conn: sa.Connection, username: str, password_hash: str, role: str, *, must_change: bool = False,
             accounts: list[str] | tuple[str, ...] | None = None) -> User:
    row = conn.execute(sa.text(f"""
        INSERT INTO users (username, password_hash, role, must_change, accounts) VALUES (:u, :h, :r, :m, :a)
        ON CONFLICT (username) DO NOTHING RETURNING {_USER_COLS}
    """), {"u": username, "h": password_hash, "r": role, "m": must_change,
           "a": list(accounts) if accounts is not None else None}).first()
    if row is None:
        raise AuthStoreError(f"user {username!r} exists")
    return _user(row)


def get_user(conn: sa.Connection, username: str, *, lock: bool = False) -> User | None:
    """``lock``: FOR UPDATE, so concurrent logins of one user take turns (parallel guesses cannot all slip in
    before the failure that locks the user is counted)."""
    sql = f"SELECT {_USER_COLS} FROM users WHERE username = :u" + (" FOR UPDATE" if lock else "")
    row = conn.execute(sa.text(sql), {"u": username}).first()
    return _user(row) if row else None


def list_users(conn: sa.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(sa.text(f"SELECT {_USER_COLS} FROM users ORDER BY username"))]


def admin_exists(conn: sa.Connection) -> bool:
    return bool(conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')")).scalar())


def set_disabled(conn: sa.Connection, username: str, disabled: bool = True) -> User:
    """Disable (or enable) a user; disabling also revokes every refresh token of the user."""
    row = conn.execute(sa.text(f"UPDATE users SET disabled = :d WHERE username = :u RETURNING {_USER_COLS}"),
                       {"u": username, "d": disabled}).first()
    if row is None:
        raise AuthStoreError(f"no user {username!r}")
    if disabled:
        revoke_subject(conn, "user", username)
    return _user(row)


def set_password(conn: sa.Connection, username: str, password_hash: str, *, must_change: bool = False) -> None:
    done = conn.execute(sa.text("UPDATE users SET password_hash = :h, must_change = :m, failed_logins = 0,"
                                " locked_until = NULL WHERE username = :u"),
                        {"u": username, "h": password_hash, "m": must_change}).rowcount
    if not done:
        raise AuthStoreError(f"no user {username!r}")


def record_failure(conn: sa.Connection, username: str, max_failures: int, lockout_s: float) -> datetime | None:
    """Count one failed login; at ``max_failures`` in a row the user is locked for ``lockout_s`` (the count starts
    again). Returns the lock's end when this failure set it. An unknown user changes nothing."""
    row = conn.execute(sa.text("""
        UPDATE users SET
            failed_logins = CASE WHEN failed_logins + 1 >= :max THEN 0 ELSE failed_logins + 1 END,
            locked_until  = CASE WHEN failed_logins + 1 >= :max THEN now() + make_interval(secs => :lock)
                                 ELSE locked_until END
        WHERE username = :u
        RETURNING failed_logins = 0 AS locked_now, locked_until
    """), {"u": username, "max": max_failures, "lock": float(lockout_s)}).first()
    return row.locked_until if row is not None and row.locked_now else None


def reset_failures(conn: sa.Connection, username: str) -> None:
    conn.execute(sa.text("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE username = :u"),
                 {"u": username})


def locked(user: User, now: datetime | None = None) -> bool:
    now = now or datetime.now(timezone.utc)
    return user.locked_until is not None and user.locked_until > now


# ---- API keys -------------------------------------------------------------------------------------------
def create_api_key(conn: sa.Connection, key_id: str, name: str, owner: str, secret_hash: str,
                   scopes: tuple[str, ...] | list[str]) -> ApiKey:
    if get_user(conn, owner) is None:
        raise AuthStoreError(f"no user {owner!r}")
    try:
        with conn.begin_nested():
            row = conn.execute(sa.text(f"""
                INSERT INTO api_keys (key_id, name, owner, secret_hash, scopes) VALUES (:k, :n, :o, :h, :s)
                RETURNING {_KEY_COLS}
            """), {"k": key_id, "n": name, "o": owner, "h": secret_hash, "s": list(scopes)}).first()
    except sa.exc.IntegrityError:
        raise AuthStoreError(f"user {owner!r} has an API key named {name!r} already (revoke it first)") from None
    return _key(row)


def get_api_key(conn: sa.Connection, key_id: str) -> ApiKey | None:
    row = conn.execute(sa.text(f"SELECT {_KEY_COLS} FROM api_keys WHERE key_id = :k"), {"k": key_id}).first()
    return _key(row) if row else None


def list_api_keys(conn: sa.Connection, owner: str | None = None) -> list[ApiKey]:
    rows = conn.execute(sa.text(f"SELECT {_KEY_COLS} FROM api_keys WHERE (CAST(:o AS text) IS NULL OR owner = :o)"
                                " ORDER BY created_at, key_id"), {"o": owner})
    return [_key(r) for r in rows]


def revoke_api_key(conn: sa.Connection, key_id: str) -> ApiKey:
    row = conn.execute(sa.text(f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE key_id = :k"
                               f" RETURNING {_KEY_COLS}"), {"k": key_id}).first()
    if row is None:
        raise AuthStoreError(f"no API key {key_id!r}")
    revoke_subject(conn, "api_key", key_id)
    return _key(row)


def touch_api_key(conn: sa.Connection, key_id: str) -> None:
    conn.execute(sa.text("UPDATE api_keys SET last_used_at = now() WHERE key_id = :k"), {"k": key_id})


def active(conn: sa.Connection, kind: str, subject: str) -> bool:
    """Whether an identity may still act: a user not disabled, or an unrevoked key whose owner is not disabled.
    Asked on every request, so disabling or revoking takes effect at once, not when access tokens expire."""
    if kind == "user":
        sql = "SELECT NOT disabled FROM users WHERE username = :s"
    else:
        sql = ("SELECT k.revoked_at IS NULL AND NOT u.disabled FROM api_keys k JOIN users u ON u.username = k.owner"
               " WHERE k.key_id = :s")
    return bool(conn.execute(sa.text(sql), {"s": subject}).scalar())


# ---- refresh tokens -------------------------------------------------------------------------------------
def store_refresh(conn: sa.Connection, token_hash: str, family: str, subject: str, kind: str, ttl_s: float,
                  scopes: list[str] | tuple[str, ...] | None = None) -> None:
    conn.execute(sa.text("""
        INSERT INTO refresh_tokens (token_hash, family, subject, kind, scopes, expires_at)
        VALUES (:h, :f, :s, :k, :sc, now() + make_interval(secs => :ttl))
    """), {"h": token_hash, "f": family, "s": subject, "k": kind, "ttl": float(ttl_s),
           "sc": list(scopes) if scopes is not None else None})


RotateOutcome = Literal["ok", "unknown", "expired", "revoked", "reused"]


@dataclass(frozen=True)
class RefreshRow:
    token_hash: str
    family: str
    subject: str
    kind: str
    scopes: tuple[str, ...] | None
    expires_at: datetime


def rotate_refresh(conn: sa.Connection, token_hash: str) -> tuple[RotateOutcome, RefreshRow | None]:
    """Use a refresh token once. ``ok``: it is marked rotated (the caller issues its successor in the same family).
    ``reused``: it was rotated before -- a copy is in someone else's hands -- and its whole family is revoked."""
    row = conn.execute(sa.text("""
        SELECT token_hash, family, subject, kind, scopes, expires_at, rotated_at IS NOT NULL AS rotated,
               revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired
        FROM refresh_tokens WHERE token_hash = :h FOR UPDATE
    """), {"h": token_hash}).first()
    if row is None:
        return "unknown", None
    found = RefreshRow(row.token_hash, row.family, row.subject, row.kind,
                       tuple(row.scopes) if row.scopes is not None else None, row.expires_at)
    if row.revoked:
        return "revoked", found
    if row.rotated:
        revoke_family(conn, row.family)
        return "reused", found
    if row.expired:
        return "expired", found
    conn.execute(sa.text("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = :h"), {"h": token_hash})
    return "ok", found


def revoke_family(conn: sa.Connection, family: str) -> int:
    return conn.execute(sa.text("UPDATE refresh_tokens SET revoked_at = now() WHERE family = :f AND revoked_at IS NULL"),
                        {"f": family}).rowcount


def revoke_refresh(conn: sa.Connection, token_hash: str, *, subject: str | None = None) -> bool:
    """Revoke the family of a refresh token (RFC 7009: revoking a refresh token ends the grant). With ``subject``,
    only a token of that identity (a caller cannot revoke someone else's). True when a token was found."""
    fam = conn.execute(sa.text("SELECT family FROM refresh_tokens WHERE token_hash = :h"
                               " AND (CAST(:s AS text) IS NULL OR subject = :s)"),
                       {"h": token_hash, "s": subject}).scalar()
    if fam is None:
        return False
    revoke_family(conn, fam)
    return True


def revoke_subject(conn: sa.Connection, kind: str, subject: str) -> int:
    return conn.execute(sa.text("UPDATE refresh_tokens SET revoked_at = now() WHERE kind = :k AND subject = :s"
                                " AND revoked_at IS NULL"), {"k": kind, "s": subject}).rowcount


def purge_expired(conn: sa.Connection, older_than_s: float = 86400.0) -> int:
    """Drop refresh tokens expired for longer than ``older_than_s`` (their reuse can no longer matter)."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_s)
    return conn.execute(sa.text("DELETE FROM refresh_tokens WHERE expires_at < :c"), {"c": cutoff}).rowcount
