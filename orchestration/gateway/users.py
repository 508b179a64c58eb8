"""Users and API keys as the CLI and the admin API manage them (one set of rules for both), and the first admin.

Every change writes an audit_log row with who made it. Secrets (a generated password, an API key's secret) are
returned once to the caller and stored only as hashes.
"""

from __future__ import annotations

import re
import secrets
import time

import sqlalchemy as sa

from orchestration.gateway import revocation
from orchestration.gateway.security import ROLES, SCOPES
from storage import auth as store
from storage.auth import AuthStoreError

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,64}$")
FIRST_ADMIN = "admin"


class UserError(ValueError):
    """A one-line refusal naming the problem (never a password or secret)."""


def audit(conn: sa.Connection, action: str, scope: str, reason: str, *, actor: str, identity: str | None,
          source: str, details: dict | None = None) -> None:
    """An audit_log row of the gateway's own: ``identity`` -- who was authenticated (an admin's or user's subject,
    the CLI's ``cli:<os user>``; None when nobody was, as for a lockout, or for the platform's own act);
    ``source`` -- the caller's address, or ``cli`` (also in ``details``, where rows before 0013 had it)."""
    from storage.stream import write_audit
    from trading.records import stable_id

    ts = time.time_ns()
    write_audit(conn, stable_id("gateway", action, scope, ts), ts, actor, action, scope, reason,
                {**(details or {}), "source": source}, identity=identity, source=source)


def _audit(conn: sa.Connection, actor: str, action: str, scope: str, details: dict, source: str = "cli") -> None:
    audit(conn, action, scope, "", actor=actor, identity=actor, source=source, details=details)


def check_username(username: str) -> str:
    if not USERNAME_RE.match(username or ""):
        raise UserError(f"username {username!r} must be 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_scopes(scopes) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    found = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in found if s not in SCOPES]
    if unknown or not found:
        raise UserError(f"scopes must be some of {', '.join(SCOPES)}, got {', '.join(found) or 'none'}")
    return found


def check_accounts(accounts) -> tuple[str, ...] | None:
    """None or empty: every account; else plain account names."""
    if not accounts:
        return None
    bad = [a for a in accounts if not ACCOUNT_RE.match(a or "")]
    if bad:
        raise UserError(f"account names {bad} are not plain names (letters, digits, '_', '.', ':', '/', '-')")
    return tuple(dict.fromkeys(accounts))


def add_user(engine: sa.Engine, username: str, password: str, role: str, *, must_change: bool = False,
             accounts=None, actor: str = "cli", source: str = "cli") -> store.User:
    """``accounts``: the trading accounts the user may see and act on (None: every one)."""
    from orchestration.gateway.passwords import PasswordError, hash_password

    check_username(username)
    check_role(role)
    accounts = check_accounts(accounts)
    try:
        password_hash = hash_password(password)
    except PasswordError as exc:
        raise UserError(str(exc)) from None
    with engine.begin() as conn:
        try:
            user = store.add_user(conn, username, password_hash, role, must_change=must_change, accounts=accounts)
        except AuthStoreError as exc:
            raise UserError(str(exc)) from None
        _audit(conn, actor, "user_added", f"user:{username}", {"role": role, "must_change": must_change,
                                                              "accounts": list(accounts) if accounts else None},
               source)
    return user


def set_disabled(engine: sa.Engine, username: str, disabled: bool = True, *, actor: str = "cli",
                 source: str = "cli") -> store.User:
    with engine.begin() as conn:
        try:
            user = store.set_disabled(conn, username, disabled)
        except AuthStoreError as exc:
            raise UserError(str(exc)) from None
        _audit(conn, actor, "user_disabled" if disabled else "user_enabled", f"user:{username}", {}, source)
        revocation.identity_changed(conn)  # every gateway process forgets its cached answers at commit
    revocation.invalidate_local()  # and this one before anyone is told "disabled"
    return user


def list_users(engine: sa.Engine) -> list[store.User]:
    with engine.connect() as conn:
        return store.list_users(conn)


def create_api_key(engine: sa.Engine, owner: str, name: str, scopes, *, actor: str = "cli",
                   source: str = "cli") -> tuple[store.ApiKey, str]:
    """A new key of ``owner`` with ``scopes`` (no more than the owner's role holds): (the key, its secret -- shown
    once, stored only as a SHA-256 digest)."""
    from orchestration.gateway.tokens import new_api_key

    if not KEY_NAME_RE.match(name or ""):
        raise UserError(f"key name {name!r} must be 1-64 of letters, digits, '_', '.', '-'")
    wanted = check_scopes(scopes)
    with engine.begin() as conn:
        user = store.get_user(conn, owner)
        if user is None:
            raise UserError(f"no user {owner!r}")
        beyond = [s for s in wanted if s not in ROLES[user.role]]
        if beyond:
            raise UserError(f"user {owner!r} ({user.role}) cannot hold scope {', '.join(beyond)}")
        key_id, secret, digest = new_api_key()
        try:
            key = store.create_api_key(conn, key_id, name, owner, digest, wanted)
        except AuthStoreError as exc:
            raise UserError(str(exc)) from None
        _audit(conn, actor, "api_key_created", f"user:{owner}", {"key_id": key_id, "name": name,
                                                                 "scopes": list(wanted)}, source)
    return key, secret


def list_api_keys(engine: sa.Engine, owner: str | None = None) -> list[store.ApiKey]:
    with engine.connect() as conn:
        return store.list_api_keys(conn, owner)


def revoke_api_key(engine: sa.Engine, key_id: str, *, actor: str = "cli", source: str = "cli") -> store.ApiKey:
    with engine.begin() as conn:
        try:
            key = store.revoke_api_key(conn, key_id)
        except AuthStoreError as exc:
            raise UserError(str(exc)) from None
        _audit(conn, actor, "api_key_revoked", f"user:{key.owner}", {"key_id": key_id}, source)
        revocation.identity_changed(conn)
    revocation.invalidate_local()
    return key


def ensure_first_admin(engine: sa.Engine) -> str | None:
    """When no admin exists: create user ``admin`` with a random one-time password (it must be changed at the
    first login) and return that password -- the only time it exists outside its hash. None when an admin exists.
    Safe to call at every start: two concurrent callers create one admin (the loser gets None)."""
    from orchestration.gateway.passwords import hash_password

    with engine.begin() as conn:
        # one starter at a time: the check and the insert must not interleave
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('tradeloop:first-admin'))"))
        if store.admin_exists(conn):
            return None
        if store.get_user(conn, FIRST_ADMIN) is not None:
            return None  # a user named admin exists with another role: an operator's choice, left alone
        password = secrets.token_urlsafe(18)
        store.add_user(conn, FIRST_ADMIN, hash_password(password), "admin", must_change=True)
        audit(conn, "user_added", f"user:{FIRST_ADMIN}", "", actor="tradeloop up", identity=None, source="cli",
              details={"role": "admin", "must_change": True, "first_admin": True})
    return password
