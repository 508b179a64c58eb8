"""Password hashes: argon2id through pwdlib with its recommended parameters."""

from __future__ import annotations

from functools import lru_cache

from pwdlib import PasswordHash

MIN_LENGTH = 12
_HASHER = PasswordHash.recommended()


class PasswordError(ValueError):
    """A password refused by policy (one line, never containing the password)."""


def check_policy(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise PasswordError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > 1024:
        raise PasswordError("a password may have at most 1024 characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_policy(password))


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _HASHER.verify(password, password_hash)
    except Exception:  # noqa: BLE001 -- a malformed stored hash verifies nothing
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("not-a-real-password-only-for-timing")


def burn_time(password: str) -> None:
    """Verify against a dummy hash: an unknown username costs as long as a wrong password (no user enumeration
    by timing)."""
    verify_password(password, _dummy_hash())
