"""Access tokens (JWT, HS256), refresh tokens and API key secrets.

Access tokens: pyjwt, HS256 with the secret provider's named secret ``gateway-jwt`` (32 random bytes, generated on
first use); decoding accepts HS256 only (no ``none``, no algorithm confusion) and requires exp, iat, iss, sub, jti.
Refresh tokens and API key secrets: 32 random bytes; only their SHA-256 is stored (storage/auth.py says why).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from deploy.settings import Settings
    from orchestration.gateway.security import Identity

ISSUER = "tradeloop"
ALGORITHM = "HS256"
KEY_NAME = "gateway-jwt"
API_KEY_PREFIX = "tlk_"


class TokenError(Exception):
    """A token that does not authenticate (the message is safe to show: it never contains the token)."""


def signing_key(settings: Settings) -> bytes:
    """The JWT key: the secret provider's named secret ``gateway-jwt`` (32 random bytes, generated on first use;
    its value is registered for redaction)."""
    from deploy.secrets import SecretProvider

    return SecretProvider.from_settings(settings).named_secret(KEY_NAME, create=True).key_bytes()


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    expires_at: int  # unix seconds


class TokenService:
    def __init__(self, key: bytes, access_ttl_s: int) -> None:
        if len(key) < 32:
            raise ValueError("the JWT signing key must have at least 32 bytes")
        self._key = key
        self.access_ttl_s = access_ttl_s
        self._verified: dict[str, dict[str, Any]] = {}

    def issue(self, identity: Identity, *, must_change: bool = False, now: float | None = None) -> AccessToken:
        iat = int(now if now is not None else time.time())
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {"sub": identity.subject, "kind": identity.kind, "role": identity.role,
                                  "scope": " ".join(sorted(identity.scopes)), "jti": jti, "iat": iat,
                                  "exp": iat + self.access_ttl_s, "iss": ISSUER}
        if identity.owner:
            claims["owner"] = identity.owner
        if identity.accounts is not None:
            claims["accounts"] = sorted(identity.accounts)
        if must_change:
            claims["pwd_change"] = True
        return AccessToken(jwt.encode(claims, self._key, algorithm=ALGORITHM), jti, iat + self.access_ttl_s)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a valid token, else TokenError. A token that verified once is remembered (a bounded map,
        by its exact text): its signature and claims cannot change, so only the expiry is checked again --
        verifying an HS256 token costs more than the rest of a cached request's authentication."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] <= time.time():  # pyjwt's rule: expired when exp <= now (no leeway)
                self._verified.pop(token, None)
                raise TokenError("token expired")
            return claims
        claims = self._decode(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()  # simple bound: entries are one decode away
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "iss", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid token") from None
        if claims.get("kind") not in ("user", "api_key") or not isinstance(claims.get("scope"), str):
            raise TokenError("invalid token")
        return claims


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(secret: str, stored: str) -> bool:
    return hmac.compare_digest(digest(secret), stored)


def new_refresh_token() -> tuple[str, str]:
    """(token for the client, digest to store)."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def new_family() -> str:
    return uuid.uuid4().hex


def new_api_key() -> tuple[str, str, str]:
    """(key id, secret shown once, digest to store). The id is public (it names the key in lists and logs)."""
    key_id = API_KEY_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, digest(secret)
