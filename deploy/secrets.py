"""Exchange API keys: where they are kept, and the mode check that needs one.

Three backends, chosen by ``TRADELOOP_SECRETS_BACKEND``:
  env    TRADELOOP_KEY_<NAME>_VENUE / _API_KEY / _SECRET / optional _PASSPHRASE / _PERMISSIONS (read-only)
  file   one encrypted file (``TRADELOOP_SECRETS_FILE``, default <home>/secrets.enc, mode 0600): a key derived from
         a passphrase with Scrypt and a random salt, the records sealed with Fernet (AES-CBC + HMAC). The passphrase
         comes from TRADELOOP_SECRETS_PASSPHRASE, or a prompt when there is a terminal.
  vault  HashiCorp Vault's KV v2 engine through hvac, one secret per key at <vault_mount>/<vault_path>/<name>;
         token from VAULT_TOKEN.
A key's secret values are ``Secret`` objects (masked when printed) and are registered with deploy.redaction as
soon as they are read, so no log line of the process can show them.

Besides exchange keys, each backend keeps *named secrets*: random values the platform generates for itself
(``control-signing``, the HMAC key of signed control messages; ``gateway-jwt``). They are not KeyRecords (no
venue, no permissions; a KeyRecord would need a fake venue and would show up in `tradeloop keys list`):
  env    TRADELOOP_SECRET_<NAME> (upper case, '-' as '_'), base64url; read-only, so it cannot be generated
  file   the same encrypted file, under the reserved entry ``secret/<name>`` (key names cannot contain '/')
  vault  <vault_mount>/<vault_path>/_secrets/<name> (a sub-folder: key listings skip folders)
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from deploy import redaction

if TYPE_CHECKING:
    from deploy.settings import Settings

VENUES = ("binance", "coinbase")
PERMISSIONS = ("read", "trade")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
PASSPHRASE_ENV = "TRADELOOP_SECRETS_PASSPHRASE"
# Scrypt cost: 2**15 x 8 x 128 B = 32 MiB and ~0.1 s per derivation (OWASP's minimum is 2**17 x 8 x 1 for
# password hashing at a login rate; a key file is opened once per process start)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class SecretsError(Exception):
    """A one-line, secret-free message for the user (the CLI prints it and exits 2)."""


class Secret:
    """A credential value that prints as ``****``; ``reveal()`` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise SecretsError("a key value is empty")
        self._value = value
        redaction.register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return redaction.MASK

    def __reduce__(self):  # pickling would write the value out in clear
        raise TypeError("a Secret is not picklable")


@dataclass(frozen=True)
class KeyRecord:
    name: str
    venue: str
    api_key: Secret
    secret: Secret
    passphrase: Secret | None = None
    permissions: tuple[str, ...] = ("read", "trade")
    created_at: datetime | None = None
    backend: str = field(default="", compare=False)

    def describe(self) -> dict[str, object]:
        """Everything but the credentials: what `tradeloop keys list`, logs and audit rows may show."""
        return {"name": self.name, "venue": self.venue, "permissions": list(self.permissions),
                "created": self.created_at.isoformat(timespec="seconds") if self.created_at else None,
                "backend": self.backend}

    def ccxt_config(self) -> dict[str, str]:
        """The credentials as ccxt's exchange constructor takes them (the venue adapter's business)."""
        config = {"apiKey": self.api_key.reveal(), "secret": self.secret.reveal()}
        if self.passphrase is not None:
            config["password"] = self.passphrase.reveal()
        return config

    def _stored(self) -> dict[str, object]:
        return {"venue": self.venue, "api_key": self.api_key.reveal(), "secret": self.secret.reveal(),
                "passphrase": self.passphrase.reveal() if self.passphrase else None,
                "permissions": list(self.permissions),
                "created_at": self.created_at.isoformat() if self.created_at else None}


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise SecretsError(f"key name {name!r} must be 1-32 lower-case letters, digits or '_', starting with a "
                           f"letter or digit")
    return name


def check_venue(venue: str) -> str:
    if venue not in VENUES:
        raise SecretsError(f"venue {venue!r} is not one of {', '.join(VENUES)}")
    return venue


def check_permissions(permissions) -> tuple[str, ...]:
    if isinstance(permissions, str):
        permissions = permissions.split(",")
    perms = tuple(dict.fromkeys(p.strip().lower() for p in permissions if p.strip()))
    if "withdraw" in perms:
        raise SecretsError("permission 'withdraw' refused: create the exchange key without withdrawal rights "
                           "(README, Going live); tradeloop only reads and trades")
    unknown = [p for p in perms if p not in PERMISSIONS]
    if unknown or not perms:
        raise SecretsError(f"permissions must be some of {','.join(PERMISSIONS)}, got {','.join(perms) or 'none'}")
    return perms


def make_record(name: str, venue: str, api_key: str, secret: str, passphrase: str | None = None,
                permissions=PERMISSIONS, created_at: datetime | None = None, backend: str = "") -> KeyRecord:
    """A checked record; the credentials are wrapped (and registered for redaction) first of all."""
    api, sec = Secret(api_key), Secret(secret)
    pas = Secret(passphrase) if passphrase else None
    return KeyRecord(check_name(name), check_venue(venue), api, sec, pas, check_permissions(permissions),
                     created_at, backend)


def _from_stored(name: str, data: dict, backend: str) -> KeyRecord:
    try:
        created = datetime.fromisoformat(data["created_at"]) if data.get("created_at") else None
        return make_record(name, data["venue"], data["api_key"], data["secret"], data.get("passphrase"),
                           data.get("permissions") or PERMISSIONS, created, backend)
    except (KeyError, TypeError, ValueError) as exc:
        raise SecretsError(f"key {name!r} in the {backend} store is malformed ({type(exc).__name__})") from None


SECRET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
SECRET_PREFIX = "secret/"
SECRET_BYTES = 32


def check_secret_name(name: str) -> str:
    if not SECRET_NAME_RE.match(name or ""):
        raise SecretsError(f"secret name {name!r} must be 1-32 lower-case letters, digits or '-'")
    return name


@dataclass(frozen=True)
class NamedSecret:
    """A random value the platform generated for itself (a signing key); ``value`` is its base64url text."""

    name: str
    value: Secret
    created_at: datetime | None = None
    backend: str = field(default="", compare=False)

    def key_bytes(self) -> bytes:
        return base64.urlsafe_b64decode(self.value.reveal() + "=" * (-len(self.value.reveal()) % 4))

    def key_id(self) -> str:
        """A fingerprint naming the value in signed messages (so that an old and a new key can be told apart
        while they rotate); 64 bits of a SHA-256 over a label and the value reveal nothing usable."""
        import hashlib

        return hashlib.sha256(f"tradeloop-kid:{self.name}:".encode() + self.key_bytes()).hexdigest()[:16]

    def _stored(self) -> dict[str, object]:
        return {"kind": "secret", "value": self.value.reveal(),
                "created_at": self.created_at.isoformat() if self.created_at else None}


def _secret_from_stored(name: str, data: dict, backend: str) -> NamedSecret:
    try:
        secret = NamedSecret(name, Secret(data["value"]),
                             datetime.fromisoformat(data["created_at"]) if data.get("created_at") else None, backend)
        if len(secret.key_bytes()) < SECRET_BYTES:
            raise ValueError
        return secret
    except (KeyError, TypeError, ValueError, SecretsError):
        raise SecretsError(f"secret {name!r} in the {backend} store is malformed (it must be at least "
                           f"{SECRET_BYTES} bytes in base64url)") from None


def generate_secret(name: str) -> NamedSecret:
    import secrets as _random

    return NamedSecret(check_secret_name(name), Secret(_random.token_urlsafe(SECRET_BYTES)), now())


class Backend(Protocol):
    name: str

    def get(self, name: str) -> KeyRecord: ...
    def list(self) -> list[KeyRecord]: ...
    def put(self, record: KeyRecord) -> None: ...
    def remove(self, name: str) -> None: ...
    def get_secret(self, name: str) -> NamedSecret | None: ...
    def create_secret(self, secret: NamedSecret) -> NamedSecret: ...


# ---- env ------------------------------------------------------------------------------------------------
class EnvBackend:
    """Keys declared in the environment: TRADELOOP_KEY_<NAME>_{VENUE,API_KEY,SECRET,PASSPHRASE,PERMISSIONS}."""

    name = "env"

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def _names(self) -> list[str]:
        found = (re.fullmatch(r"TRADELOOP_KEY_(\w+?)_API_KEY", k) for k in self.environ)
        return sorted(m.group(1).lower() for m in found if m)

    def get(self, name: str) -> KeyRecord:
        prefix = f"TRADELOOP_KEY_{check_name(name).upper()}_"
        env = self.environ
        if prefix + "API_KEY" not in env:
            raise SecretsError(f"no key {name!r} in the environment ({prefix}API_KEY is not set)")
        missing = [prefix + s for s in ("VENUE", "SECRET") if not env.get(prefix + s)]
        if missing:
            raise SecretsError(f"key {name!r}: {' and '.join(missing)} not set")
        return make_record(name, env[prefix + "VENUE"].strip().lower(), env[prefix + "API_KEY"], env[prefix + "SECRET"],
                           env.get(prefix + "PASSPHRASE") or None, env.get(prefix + "PERMISSIONS") or "read,trade",
                           None, self.name)

    def list(self) -> list[KeyRecord]:
        return [self.get(name) for name in self._names()]

    def put(self, record: KeyRecord) -> None:
        raise SecretsError("the env key store is read-only: set TRADELOOP_KEY_<NAME>_VENUE, _API_KEY, _SECRET "
                           "(and _PASSPHRASE, _PERMISSIONS) in the environment, or use TRADELOOP_SECRETS_BACKEND="
                           "file or vault")

    def remove(self, name: str) -> None:
        raise SecretsError(f"the env key store is read-only: unset TRADELOOP_KEY_{name.upper()}_* in the "
                           f"environment to remove key {name!r}")

    @staticmethod
    def secret_var(name: str) -> str:
        return "TRADELOOP_SECRET_" + check_secret_name(name).upper().replace("-", "_")

    def get_secret(self, name: str) -> NamedSecret | None:
        value = self.environ.get(self.secret_var(name))
        return None if not value else _secret_from_stored(name, {"value": value.strip()}, self.name)

    def create_secret(self, secret: NamedSecret) -> NamedSecret:
        raise SecretsError(f"secret {secret.name!r} is missing and the env key store is read-only: set "
                           f"{self.secret_var(secret.name)} to 32 random bytes in base64url (python -c \"import "
                           f"secrets; print(secrets.token_urlsafe(32))\"), or use TRADELOOP_SECRETS_BACKEND=file")


# ---- file -----------------------------------------------------------------------------------------------
def passphrase_from_env_or_prompt(confirm: bool) -> str:
    """TRADELOOP_SECRETS_PASSPHRASE, else a hidden prompt on the terminal (twice when the file is new)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise SecretsError(f"the key file needs its passphrase (set {PASSPHRASE_ENV} or run in a terminal)")
    import getpass

    value = getpass.getpass("passphrase of the key file: ")
    if confirm and getpass.getpass("again: ") != value:
        raise SecretsError("the two passphrases differ")
    if not value:
        raise SecretsError("the passphrase is empty")
    return value


class FileBackend:
    """An encrypted JSON file. Every write re-encrypts under a fresh salt and replaces the file atomically."""

    name = "file"
    FORMAT = "tradeloop-keys/1"

    def __init__(self, path: Path, passphrase: Callable[[bool], str] = passphrase_from_env_or_prompt) -> None:
        self.path = Path(path)
        self._passphrase_source = passphrase
        self._passphrase: str | None = None

    def _secret_phrase(self, new_file: bool) -> str:
        if self._passphrase is None:
            self._passphrase = self._passphrase_source(new_file)
            redaction.register(self._passphrase)
        return self._passphrase

    @staticmethod
    def _fernet(passphrase: str, salt: bytes, n: int, r: int, p: int):
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
        return Fernet(base64.urlsafe_b64encode(key))

    def _load(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        from cryptography.fernet import InvalidToken

        try:
            head = json.loads(self.path.read_text())
            if head.get("format") != self.FORMAT:
                raise ValueError
            salt = base64.b64decode(head["salt"], validate=True)
            n, r, p = int(head["n"]), int(head["r"]), int(head["p"])
            token = head["token"].encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SecretsError(f"{self.path} is not a tradeloop key file (or it was altered)") from None
        try:
            plain = self._fernet(self._secret_phrase(False), salt, n, r, p).decrypt(token)
        except (InvalidToken, ValueError):
            raise SecretsError(f"cannot open {self.path}: wrong passphrase, or the file was altered") from None
        return json.loads(plain)

    def _save(self, records: dict[str, dict]) -> None:
        salt = os.urandom(16)
        fernet = self._fernet(self._secret_phrase(not self.path.exists()), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        head = {"format": self.FORMAT, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                "salt": base64.b64encode(salt).decode(),
                "token": fernet.encrypt(json.dumps(records, sort_keys=True).encode()).decode()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # atomic: a temporary file (owner-only from its creation) in the same directory, synced, then renamed
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(head))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, name: str) -> KeyRecord:
        records = self._load()
        if check_name(name) not in records:
            raise SecretsError(f"no key {name!r} in {self.path}")
        return _from_stored(name, records[name], self.name)

    def list(self) -> list[KeyRecord]:
        return [_from_stored(n, d, self.name) for n, d in sorted(self._load().items()) if "/" not in n]

    def get_secret(self, name: str) -> NamedSecret | None:
        data = self._load().get(SECRET_PREFIX + check_secret_name(name))
        return None if data is None else _secret_from_stored(name, data, self.name)

    def create_secret(self, secret: NamedSecret) -> NamedSecret:
        with self._locked():  # another process may have created it meanwhile: the stored one wins
            records = self._load()
            entry = SECRET_PREFIX + secret.name
            if entry not in records:
                records[entry] = secret._stored()
                self._save(records)
            return _secret_from_stored(secret.name, records[entry], self.name)

    def _locked(self):
        """An exclusive lock around read-modify-write, so two `keys add` at once cannot lose a key."""
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def lock():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

        return lock()

    def put(self, record: KeyRecord) -> None:
        with self._locked():
            records = self._load()
            if record.name in records:
                raise SecretsError(f"key {record.name!r} exists in {self.path}: remove it first")
            records[record.name] = record._stored()
            self._save(records)

    def remove(self, name: str) -> None:
        with self._locked():
            records = self._load()
            if records.pop(check_name(name), None) is None:
                raise SecretsError(f"no key {name!r} in {self.path}")
            self._save(records)


# ---- vault ----------------------------------------------------------------------------------------------
class VaultBackend:
    """HashiCorp Vault KV v2 through hvac: <mount>/data/<path>/<name>."""

    name = "vault"

    def __init__(self, url: str, mount: str, path: str, token: str | None = None) -> None:
        token = token or os.environ.get("VAULT_TOKEN")
        if not token:
            raise SecretsError("the vault key store needs a token: set VAULT_TOKEN")
        redaction.register(token)
        import hvac

        self.url, self.mount, self.path = url, mount, path.strip("/")
        self.client = hvac.Client(url=url, token=token, timeout=10)

    def _call(self, what: str, fn, *args, **kwargs):
        import hvac.exceptions as hx
        import requests

        try:
            return fn(*args, **kwargs)
        except hx.InvalidPath:
            raise
        except hx.Forbidden:
            raise SecretsError(f"vault at {self.url} refused to {what}: permission denied (check VAULT_TOKEN and "
                               f"its policy on {self.mount}/{self.path})") from None
        except hx.VaultError as exc:
            raise SecretsError(f"vault at {self.url} could not {what}: "
                               f"{redaction.scrub_exception(exc)}") from None
        except requests.RequestException as exc:
            raise SecretsError(f"vault at {self.url} is unreachable ({type(exc).__name__})") from None

    def _key_path(self, name: str) -> str:
        return f"{self.path}/{check_name(name)}"

    def get(self, name: str) -> KeyRecord:
        import hvac.exceptions as hx

        try:
            answer = self._call(f"read key {name!r}", self.client.secrets.kv.v2.read_secret_version,
                                path=self._key_path(name), mount_point=self.mount, raise_on_deleted_version=True)
        except hx.InvalidPath:
            raise SecretsError(f"no key {name!r} in vault at {self.mount}/{self.path}") from None
        return _from_stored(name, answer["data"]["data"], self.name)

    def _names(self) -> list[str]:
        import hvac.exceptions as hx

        try:
            answer = self._call("list keys", self.client.secrets.kv.v2.list_secrets, path=self.path,
                                mount_point=self.mount)
        except hx.InvalidPath:  # nothing stored under the path yet
            return []
        return sorted(k for k in answer["data"]["keys"] if not k.endswith("/"))

    def list(self) -> list[KeyRecord]:
        return [self.get(name) for name in self._names()]

    def put(self, record: KeyRecord) -> None:
        if record.name in self._names():
            raise SecretsError(f"key {record.name!r} exists in vault at {self.mount}/{self.path}: remove it first")
        # cas=0: written only if no version exists, so two concurrent adds cannot overwrite each other
        self._call(f"store key {record.name!r}", self.client.secrets.kv.v2.create_or_update_secret,
                   path=self._key_path(record.name), secret=record._stored(), cas=0, mount_point=self.mount)

    def get_secret(self, name: str) -> NamedSecret | None:
        import hvac.exceptions as hx

        try:
            answer = self._call(f"read secret {name!r}", self.client.secrets.kv.v2.read_secret_version,
                                path=f"{self.path}/_secrets/{check_secret_name(name)}", mount_point=self.mount,
                                raise_on_deleted_version=True)
        except hx.InvalidPath:
            return None
        return _secret_from_stored(name, answer["data"]["data"], self.name)

    def create_secret(self, secret: NamedSecret) -> NamedSecret:
        import hvac.exceptions as hx

        def write() -> None:
            try:  # cas=0: only if absent; a concurrent creator's value wins and is read back below
                self.client.secrets.kv.v2.create_or_update_secret(
                    path=f"{self.path}/_secrets/{secret.name}", secret=secret._stored(), cas=0,
                    mount_point=self.mount)
            except hx.InvalidRequest:
                pass

        self._call(f"store secret {secret.name!r}", write)
        stored = self.get_secret(secret.name)
        if stored is None:
            raise SecretsError(f"vault at {self.url}: secret {secret.name!r} could not be stored")
        return stored

    def remove(self, name: str) -> None:
        if check_name(name) not in self._names():
            raise SecretsError(f"no key {name!r} in vault at {self.mount}/{self.path}")
        self._call(f"remove key {name!r}", self.client.secrets.kv.v2.delete_metadata_and_all_versions,
                   path=self._key_path(name), mount_point=self.mount)


# ---- the provider ---------------------------------------------------------------------------------------
class SecretProvider:
    """The configured key store; every record it hands out has its values registered for redaction."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> SecretProvider:
        kind = settings.secrets_backend
        if kind == "env":
            return cls(EnvBackend(**kwargs))
        if kind == "file":
            return cls(FileBackend(settings.secrets_file or settings.home / "secrets.enc", **kwargs))
        return cls(VaultBackend(settings.vault_url, settings.vault_mount, settings.vault_path, **kwargs))

    def get(self, name: str) -> KeyRecord:
        return self.backend.get(name)

    def list(self) -> list[KeyRecord]:
        return self.backend.list()

    def add(self, record: KeyRecord) -> None:
        self.backend.put(record)

    def remove(self, name: str) -> None:
        self.backend.remove(name)

    def named_secret(self, name: str, create: bool = False) -> NamedSecret:
        """The named secret; with ``create``, generated (32 random bytes) and stored when missing. Its value is
        registered for redaction; errors never contain it."""
        found = self.backend.get_secret(name)
        if found is not None:
            return found
        if not create:
            raise SecretsError(f"no secret {name!r} in the {self.backend.name} store (`tradeloop up` generates it)")
        return self.backend.create_secret(generate_secret(name))


CONTROL_SIGNING = "control-signing"


def control_signing_key(settings: Settings, create: bool, provider: SecretProvider | None = None
                        ) -> tuple[str, bytes]:
    """(kid, key) of signed control messages (streaming/signing.py): the gateway and the CLI sign with it, the
    worker verifies with it. ``create``: generate it on first use. Raises SecretsError (one line, no value)."""
    secret = (provider or SecretProvider.from_settings(settings)).named_secret(CONTROL_SIGNING, create)
    return secret.key_id(), secret.key_bytes()


def check_mode(settings: Settings, provider: SecretProvider | None = None) -> KeyRecord | None:
    """Paper, and venue ib (the logged-in gateway holds the credentials): None. Sandbox and live: the key named by
    TRADELOOP_VENUE_KEY, which must exist, belong to the configured venue and allow trading; anything else raises
    SecretsError (one line). The settings themselves already refuse a missing venue, key name or live
    confirmation (deploy.settings)."""
    if settings.mode == "paper":
        return None
    where = f"TRADELOOP_MODE={settings.mode}"
    if settings.venue == "ib":
        return None  # no API key: the TWS / IB Gateway the adapter connects to is already logged in
    if settings.venue not in VENUES or not settings.venue_key:  # also checked by the settings; kept for callers
        raise SecretsError(f"{where} needs TRADELOOP_VENUE (one of {', '.join(VENUES)}) and TRADELOOP_VENUE_KEY")
    provider = provider or SecretProvider.from_settings(settings)
    try:
        record = provider.get(settings.venue_key)
    except SecretsError as exc:
        raise SecretsError(f"{where}: {exc}") from None
    if record.venue != settings.venue:
        raise SecretsError(f"{where}: key {record.name!r} is for {record.venue}, but TRADELOOP_VENUE={settings.venue}")
    if "trade" not in record.permissions:
        raise SecretsError(f"{where}: key {record.name!r} lacks the 'trade' permission (it has "
                           f"{','.join(record.permissions)})")
    return record


def export_passphrase(provider: SecretProvider | None) -> None:
    """`up` asked for the key file's passphrase at the terminal: hand it to the services it starts (the worker
    has no terminal) through their environment, which only this user (and root) can read."""
    backend = provider.backend if provider else None
    if isinstance(backend, FileBackend) and backend._passphrase and not os.environ.get(PASSPHRASE_ENV):
        os.environ[PASSPHRASE_ENV] = backend._passphrase


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
