"""The PostgreSQL roles of the embedded server, by component: their names, their passwords (named secrets in the
secret provider: ``pg-admin``, ``pg-<component>``) and their URLs. What each role may do -- the roles' creation,
grants and the owner's functions -- is deploy/stack/pgroles.py; this part sits beside the settings, which hand
every component its URL (Settings.database_url_for)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from deploy.errors import StackError

if TYPE_CHECKING:
    from deploy.settings import Settings

ADMIN = "admin"
COMPONENTS = ("migrate", "stream", "batch", "read", "gateway", "mlflow", "dagster")
OWNS_DATABASE = {"mlflow": "mlflow", "dagster": "dagster"}

_PASSWORD_RE = re.compile(r"^[A-Za-z0-9_-]{32,}$")  # token_urlsafe: safe inside a SQL literal and a URL


def role(component: str) -> str:
    return "tradeloop" if component == ADMIN else f"tradeloop_{component}"


def url(settings: Settings, component: str, port: int | None = None, database: str | None = None,
        driver: str = "postgresql+psycopg") -> str:
    """SQLAlchemy URL of ``component``'s role on the embedded server (with its password: never print it; see
    ``redacted``). Its own database for mlflow and dagster, else ``tradeloop``."""
    from sqlalchemy.engine import URL

    return URL.create(driver, username=role(component), password=password(settings, component),
                      host=settings.host, port=port or settings.pg_port,
                      database=database or OWNS_DATABASE.get(component, "tradeloop")
                      ).render_as_string(hide_password=False)


def secret_name(component: str) -> str:
    return f"pg-{component}"


# ---- passwords ------------------------------------------------------------------------------------------------
_cache: dict[tuple, str] = {}
_providers: dict[tuple, object] = {}


def _store_key(settings: Settings) -> tuple:
    return (settings.secrets_backend, str(settings.secrets_file or settings.home / "secrets.enc"),
            settings.vault_url, settings.vault_mount, settings.vault_path)


def provider(settings: Settings):
    """One secret provider per store and process (the file store derives its key once per load)."""
    from deploy.secrets import SecretProvider

    key = _store_key(settings)
    if key not in _providers:
        _providers[key] = SecretProvider.from_settings(settings)
    return _providers[key]


def use_provider(settings: Settings, secret_provider) -> None:
    """Keep the passwords of the server ``settings`` describe in ``secret_provider`` (a throwaway server's
    throwaway key file) instead of the configured store."""
    _providers[_store_key(settings)] = secret_provider


def password(settings: Settings, component: str, create: bool = False) -> str:
    """The role's password from the secret provider; ``create``: generated and stored when missing (`up`).
    Raises StackError (one line, no value) when the store cannot give it."""
    from deploy.secrets import SecretsError

    key = (*_store_key(settings), component)
    if key not in _cache:
        try:
            value = provider(settings).named_secret(secret_name(component), create).value.reveal()
        except SecretsError as exc:
            raise StackError(f"postgres: password of role {role(component)}: {exc}") from None
        if not _PASSWORD_RE.match(value):
            raise StackError(f"postgres: secret {secret_name(component)!r} is not a generated password "
                             "(32+ characters of A-Z a-z 0-9 - _)")
        _cache[key] = value
    return _cache[key]
