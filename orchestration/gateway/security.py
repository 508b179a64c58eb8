"""Who is calling, and may they: Identity, the role table, and ``require(*scopes)`` (a FastAPI dependency).

A bearer access token (JWT, tokens.py) is checked on every request: signature, algorithm, issuer, expiry, a
revoked ``jti``, and -- in PostgreSQL, through a cache of a few seconds that a disable or revoke through tradeloop
empties at once (revocation.py) -- that the user is not disabled and the key not revoked, so taking an identity
away takes effect at once. 401 when the caller is not authenticated, 403 when it lacks a scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer

SCOPES = ("read", "trade", "risk", "admin")
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "trade"}),
    "risk_officer": frozenset({"read", "risk"}),
    "admin": frozenset({"read", "trade", "risk", "admin"}),
}
TOKEN_URL = "/api/v1/auth/token"

# auto_error=False: a missing token is our own 401 (one error format), and OpenAPI still shows the flow
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False,
                                     scopes={s: f"the {s} scope" for s in SCOPES})


@dataclass(frozen=True)
class Identity:
    subject: str                       # username, or API key id
    kind: Literal["user", "api_key"]
    role: str                          # a key of ROLES for users; "api_key" for programs
    scopes: frozenset[str]
    source: str                        # the caller's address
    owner: str | None = None           # the user an API key belongs to
    jti: str = ""
    expires_at: int = 0
    must_change: bool = field(default=False, compare=False)
    accounts: frozenset[str] | None = None  # the trading accounts it may see and act on; None: every one

    def may_see(self, account: str) -> bool:
        return self.accounts is None or account in self.accounts

    def brief(self) -> dict:
        return {"subject": self.subject, "kind": self.kind, "role": self.role, "scopes": sorted(self.scopes),
                "owner": self.owner, "source": self.source, "must_change": self.must_change,
                "accounts": sorted(self.accounts) if self.accounts is not None else None}


def client_address(request: Request) -> str:
    # the socket's peer; a proxy's X-Forwarded-For is not trusted (nothing here configures a trusted proxy)
    return request.client.host if request.client else "unknown"


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _verify(request: Request, token: str | None) -> Identity:
    """Everything but the database's word: the token's signature and claims, a revoked jti, the rate limits."""
    from orchestration.gateway.tokens import TokenError

    gw = request.app.state.gateway
    source = client_address(request)
    if not token:
        gw.limits.auth_failure(source)
        raise unauthorized("not authenticated: send Authorization: Bearer <access token> (POST " + TOKEN_URL + ")")
    try:
        claims = gw.tokens.decode(token)
    except TokenError as exc:
        gw.limits.auth_failure(source)
        raise unauthorized(str(exc)) from None
    if gw.is_denied(claims["jti"]):
        gw.limits.auth_failure(source)
        raise unauthorized("token revoked")
    accounts = claims.get("accounts")
    identity = Identity(subject=claims["sub"], kind=claims["kind"], role=str(claims.get("role", "")),
                        scopes=frozenset(claims["scope"].split()) & frozenset(SCOPES), source=source,
                        owner=claims.get("owner"), jti=claims["jti"], expires_at=int(claims["exp"]),
                        must_change=bool(claims.get("pwd_change")),
                        accounts=frozenset(map(str, accounts)) if isinstance(accounts, list) else None)
    gw.limits.identity(identity.kind + ":" + identity.subject)
    return identity


def authenticate(request: Request, token: str | None) -> Identity:
    """The identity of a bearer token, or 401 (429 once an address keeps failing). Asks the database whether the
    identity is still active (no cache)."""
    identity = _verify(request, token)
    if not request.app.state.gateway.is_active(identity.kind, identity.subject):
        raise unauthorized("identity disabled or revoked")
    return identity


async def authenticate_async(request: Request, token: str | None) -> Identity:
    """``authenticate`` on the event loop: the identity check comes from the process's identity cache when it is
    fresh (revocation.py: a disable or revoke through tradeloop empties it at once), else from the database in a
    worker thread."""
    from starlette.concurrency import run_in_threadpool

    gw = request.app.state.gateway
    identity = _verify(request, token)
    if not gw.cached_active(identity.kind, identity.subject) and \
            not await run_in_threadpool(gw.check_active, identity.kind, identity.subject):
        raise unauthorized("identity disabled or revoked")
    return identity


def require(*scopes: str, allow_must_change: bool = False):
    """A dependency: the caller's Identity, which must hold every one of ``scopes``. A user still holding a
    one-time password may do nothing but change it (``allow_must_change`` marks the routes for that)."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}")

    async def dependency(request: Request, token: str | None = Depends(oauth2_scheme)) -> Identity:
        identity = await authenticate_async(request, token)
        if identity.must_change and not allow_must_change:
            raise HTTPException(403, "password change required: POST /api/v1/auth/password first")
        missing = [s for s in scopes if s not in identity.scopes]
        if missing:
            raise HTTPException(403, f"forbidden: needs scope {', '.join(missing)}")
        request.state.identity = identity
        return identity

    dependency.required_scopes = tuple(scopes)  # read by the route matrix test and the docs
    return dependency
