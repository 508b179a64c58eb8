"""POST /api/v1/auth/token (OAuth2: password | client_credentials | refresh_token), POST /api/v1/auth/revoke,
GET /api/v1/auth/me, POST /api/v1/auth/password.

Errors of the token endpoint follow RFC 6749 section 5.2 ({"error": ..., "error_description": ...}); a wrong
username and a wrong password give the same answer and take as long (argon2 on a dummy hash).
"""

from __future__ import annotations

import base64
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel, ConfigDict, Field

from orchestration.gateway.security import ROLES, SCOPES, Identity, client_address, require
from orchestration.gateway.users import USERNAME_RE, audit
from storage import auth as store

router = APIRouter(prefix="/auth", tags=["auth"])
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict | None = None) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.headers = error, description, status, headers or {}


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    scope: str
    refresh_token: str | None = None
    must_change_password: bool = False


def _scopes(granted: frozenset[str], requested: str | None) -> frozenset[str]:
    """The requested scopes (space-separated) if all are granted; all granted ones when none are asked for."""
    if not requested or not requested.strip():
        return granted
    asked = frozenset(requested.split())
    unknown = asked - set(SCOPES)
    if unknown:
        # not echoed: the caller's text could be anything pasted into the wrong field
        raise OAuthError("invalid_scope", f"unknown scope: the scopes are {' '.join(SCOPES)}")
    if not asked <= granted:
        raise OAuthError("invalid_scope", f"scope {' '.join(sorted(asked - granted))} is not granted to this identity")
    return asked


def _accounts(user) -> frozenset[str] | None:
    return frozenset(user.accounts) if user.accounts is not None else None


def _issue(gw, identity: Identity, conn, *, must_change: bool = False, family: str | None = None,
           refresh: bool = True, asked: frozenset[str] | None = None) -> TokenResponse:
    from orchestration.gateway import tokens

    access = gw.tokens.issue(identity, must_change=must_change)
    refresh_token = None
    if refresh:
        refresh_token, digest = tokens.new_refresh_token()
        store.store_refresh(conn, digest, family or tokens.new_family(), identity.subject, identity.kind,
                            gw.settings.gateway_refresh_ttl_s, sorted(asked) if asked is not None else None)
    return TokenResponse(access_token=access.token, expires_in=gw.tokens.access_ttl_s,
                         scope=" ".join(sorted(identity.scopes)), refresh_token=refresh_token,
                         must_change_password=must_change)


def _password_grant(gw, source: str, username: str | None, password: str | None, scope: str | None):
    from orchestration.gateway.passwords import burn_time, verify_password

    if not username or not password:
        raise OAuthError("invalid_request", "grant_type=password needs username and password")
    settings = gw.settings
    failure = None
    with gw.engine.begin() as conn:
        # a name that cannot be a username (e.g. with a NUL, which PostgreSQL text refuses) is an unknown user
        user = store.get_user(conn, username, lock=True) if USERNAME_RE.match(username) else None
        if user is None or user.disabled:
            burn_time(password)
            failure = OAuthError("invalid_grant", "wrong username or password")
        elif store.locked(user):
            failure = OAuthError("invalid_grant", "too many failed logins: this user is locked, try again later")
        elif not verify_password(password, user.password_hash):
            until = store.record_failure(conn, username, settings.gateway_login_max_failures,
                                         settings.gateway_lockout_s)
            if until is not None:
                audit(conn, "user_locked", f"user:{username}", "too many failed logins", actor="gateway",
                      identity=None, source=source, details={"locked_until": until.isoformat()})
            failure = OAuthError("invalid_grant", "wrong username or password")
        else:
            store.reset_failures(conn, username)
            granted = ROLES[user.role]
            asked = _scopes(granted, scope) if scope else None
            identity = Identity(user.username, "user", user.role, asked or granted, source,
                                accounts=_accounts(user))
            return _issue(gw, identity, conn, must_change=user.must_change, asked=asked)
    raise failure  # after the transaction: a counted failure is committed, not rolled back


def _client_credentials(request: Request, gw, source: str, client_id: str | None, client_secret: str | None,
                        scope: str | None):
    from orchestration.gateway import tokens

    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, client_secret = base64.b64decode(basic[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic authorization header", 401,
                             {"WWW-Authenticate": "Basic"}) from None
    if not client_id or not client_secret:
        raise OAuthError("invalid_client", "grant_type=client_credentials needs client_id and client_secret", 401)
    with gw.engine.begin() as conn:
        key = store.get_api_key(conn, client_id) if KEY_ID_RE.match(client_id) else None
        owner = store.get_user(conn, key.owner) if key else None
        valid = key is not None and tokens.same_digest(client_secret, key.secret_hash)
        if not valid or key.revoked_at is not None or owner is None or owner.disabled:
            raise OAuthError("invalid_client", "unknown, revoked or wrong client credentials", 401)
        granted = frozenset(key.scopes) & ROLES[owner.role]  # a key never holds more than its owner's role
        identity = Identity(key.key_id, "api_key", "api_key", _scopes(granted, scope), source, owner=key.owner,
                            accounts=_accounts(owner))
        store.touch_api_key(conn, key.key_id)
        # RFC 6749 4.4.3: no refresh token for client credentials -- the program holds its secret
        return _issue(gw, identity, conn, refresh=False)


def _refresh_grant(gw, source: str, refresh_token: str | None, scope: str | None):
    from orchestration.gateway import tokens

    if not refresh_token:
        raise OAuthError("invalid_request", "grant_type=refresh_token needs refresh_token")
    failure = None
    with gw.engine.begin() as conn:
        outcome, row = store.rotate_refresh(conn, tokens.digest(refresh_token))
        if outcome == "reused":
            audit(conn, "refresh_reuse", f"{row.kind}:{row.subject}",
                  "a rotated refresh token was used again: every token of its login is revoked", actor="gateway",
                  identity=None, source=source, details={"family": row.family})
            failure = OAuthError("invalid_grant", "refresh token reused: every token of this login is revoked")
        elif outcome != "ok":
            failure = OAuthError("invalid_grant", f"refresh token {'expired' if outcome == 'expired' else 'invalid'}")
        else:
            user = store.get_user(conn, row.subject) if row.kind == "user" else None
            if user is None or user.disabled:
                failure = OAuthError("invalid_grant", "refresh token invalid")
            else:
                granted = ROLES[user.role] & frozenset(row.scopes) if row.scopes is not None else ROLES[user.role]
                asked = _scopes(granted, scope) if scope else (frozenset(row.scopes) if row.scopes else None)
                identity = Identity(user.username, "user", user.role, asked or granted, source,
                                    accounts=_accounts(user))
                return _issue(gw, identity, conn, must_change=user.must_change, family=row.family, asked=asked)
    raise failure  # after the transaction: a family revoked for reuse stays revoked


@router.post("/token", response_model=TokenResponse, response_model_exclude_none=True,
             summary="OAuth2 token endpoint: password, client_credentials or refresh_token grant")
def token(request: Request,
          grant_type: Annotated[str, Form(max_length=32)],
          username: Annotated[str | None, Form(max_length=64)] = None,
          password: Annotated[str | None, Form(max_length=1024)] = None,
          scope: Annotated[str | None, Form(max_length=256)] = None,
          client_id: Annotated[str | None, Form(max_length=64)] = None,
          client_secret: Annotated[str | None, Form(max_length=256)] = None,
          refresh_token: Annotated[str | None, Form(max_length=256)] = None):
    from fastapi.responses import JSONResponse

    gw = request.app.state.gateway
    source = client_address(request)
    gw.limits.token_request(source)
    if grant_type == "password":
        answer = _password_grant(gw, source, username, password, scope)
    elif grant_type == "client_credentials":
        answer = _client_credentials(request, gw, source, client_id, client_secret, scope)
    elif grant_type == "refresh_token":
        answer = _refresh_grant(gw, source, refresh_token, scope)
    else:
        raise OAuthError("unsupported_grant_type", "grant_type must be password, client_credentials or refresh_token")
    return JSONResponse(answer.model_dump(exclude_none=True), headers=NO_STORE)


@router.post("/revoke", summary="Revoke one of your tokens (RFC 7009): an access token, or a refresh token "
                                "and every token of its login")
def revoke(request: Request, token: Annotated[str, Form(max_length=4096)],
           token_type_hint: Annotated[str | None, Form(max_length=32)] = None,
           identity: Identity = Depends(require(allow_must_change=True))) -> dict:
    from orchestration.gateway import tokens

    gw = request.app.state.gateway
    revoked = False
    if token.count(".") == 2:  # a JWT: deny its jti until it expires (only the caller's own)
        try:
            claims = gw.tokens.decode(token)
        except tokens.TokenError:
            claims = None
        if claims and claims["sub"] == identity.subject and claims["kind"] == identity.kind:
            gw.deny(claims["jti"], int(claims["exp"]))
            revoked = True
    else:
        with gw.engine.begin() as conn:
            revoked = store.revoke_refresh(conn, tokens.digest(token), subject=identity.subject)
    # RFC 7009 2.2: 200 whether or not the token was valid (no oracle for other people's tokens)
    return {"ok": True, "revoked": revoked}


@router.get("/me", summary="The authenticated identity")
def me(identity: Identity = Depends(require(allow_must_change=True))) -> dict:
    return identity.brief()


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


@router.post("/password", summary="Change your password (required after a one-time password); every refresh "
                                  "token of yours is revoked: log in again")
def change_password(request: Request, body: PasswordChange,
                    identity: Identity = Depends(require(allow_must_change=True))) -> dict:
    from fastapi import HTTPException

    from orchestration.gateway.passwords import PasswordError, hash_password, verify_password

    if identity.kind != "user":
        raise HTTPException(403, "only users have passwords")
    gw = request.app.state.gateway
    with gw.engine.begin() as conn:
        user = store.get_user(conn, identity.subject)
        if user is None or not verify_password(body.current_password, user.password_hash):
            raise HTTPException(400, "current password is wrong")
        if body.new_password == body.current_password:
            raise HTTPException(400, "the new password must differ from the current one")
        try:
            new_hash = hash_password(body.new_password)
        except PasswordError as exc:
            raise HTTPException(400, str(exc)) from None
        store.set_password(conn, identity.subject, new_hash, must_change=False)
        store.revoke_subject(conn, "user", identity.subject)
        audit(conn, "password_changed", f"user:{identity.subject}", "", actor=identity.subject,
              identity=identity.subject, source=identity.source)
    if identity.jti:
        gw.deny(identity.jti, identity.expires_at)  # the token carrying pwd_change is done
    return {"ok": True}
