"""deploy.secrets' named secrets (the control-signing key): generated once on first use, the same value read
back by every process, never in an error, kept apart from the exchange keys in all three backends."""

from __future__ import annotations

import base64
import threading

import pytest

from deploy.secrets import (EnvBackend, FileBackend, SecretProvider, SecretsError, VaultBackend, control_signing_key,
                            make_record, now)
from tests.conftest import make_settings
from tests.deploy.fake_vault import FakeVault

PHRASE = "correct horse battery staple"


def _file(tmp_path) -> SecretProvider:
    return SecretProvider(FileBackend(tmp_path / "secrets.enc", passphrase=lambda new: PHRASE))


def test_file_backend_generates_once_and_keeps_it_apart_from_exchange_keys(tmp_path):
    settings = make_settings(tmp_path)
    with pytest.raises(SecretsError, match="no secret 'control-signing' in the file store"):
        control_signing_key(settings, create=False, provider=_file(tmp_path))
    kid, key = control_signing_key(settings, create=True, provider=_file(tmp_path))
    assert len(key) == 32 and len(kid) == 16
    # another process (a fresh provider) reads the same key; a second create does not replace it
    assert control_signing_key(settings, create=True, provider=_file(tmp_path)) == (kid, key)
    assert control_signing_key(settings, create=False, provider=_file(tmp_path)) == (kid, key)
    provider = _file(tmp_path)
    provider.add(make_record("main", "binance", "AK-0123456789", "SK-abcdefghij", None, "read,trade", now()))
    assert [r.name for r in provider.list()] == ["main"]  # the secret is no exchange key
    assert key not in (tmp_path / "secrets.enc").read_bytes()  # encrypted at rest
    assert base64.urlsafe_b64encode(key).rstrip(b"=") not in (tmp_path / "secrets.enc").read_bytes()
    assert control_signing_key(settings, create=False, provider=_file(tmp_path)) == (kid, key)


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    settings = make_settings(tmp_path)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(control_signing_key(settings, True, _file(tmp_path))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and len(set(got)) == 1


def test_env_backend_reads_the_variable_and_cannot_generate(tmp_path):
    settings = make_settings(tmp_path)
    value = base64.urlsafe_b64encode(b"\x01" * 32).decode().rstrip("=")
    env = SecretProvider(EnvBackend({"TRADELOOP_SECRET_CONTROL_SIGNING": value}))
    kid, key = control_signing_key(settings, create=False, provider=env)
    assert key == b"\x01" * 32
    empty = SecretProvider(EnvBackend({}))
    with pytest.raises(SecretsError, match="TRADELOOP_SECRET_CONTROL_SIGNING") as exc:
        control_signing_key(settings, create=True, provider=empty)
    assert "\n" not in str(exc.value)
    short = SecretProvider(EnvBackend({"TRADELOOP_SECRET_CONTROL_SIGNING": "c2hvcnQ"}))
    with pytest.raises(SecretsError, match="malformed") as exc:
        control_signing_key(settings, create=False, provider=short)
    assert "c2hvcnQ" not in str(exc.value)


def test_vault_backend_stores_it_in_a_sub_folder(tmp_path):
    settings = make_settings(tmp_path)
    with FakeVault(token="s.test-token-123456") as vault:
        store = SecretProvider(VaultBackend(vault.url, "secret", "tradeloop/keys", token="s.test-token-123456"))
        kid, key = control_signing_key(settings, create=True, provider=store)
        assert set(vault.data) == {"tradeloop/keys/_secrets/control-signing"}
        assert control_signing_key(settings, create=True, provider=store) == (kid, key)
        assert store.list() == []  # key listings skip the folder


def test_up_makes_the_platform_secrets_with_a_generated_passphrase_only_for_a_new_key_file(tmp_path, monkeypatch):
    """`up` starts unattended: with no passphrase configured, a new key file gets a generated passphrase beside it
    (owner only) that every process of the home finds; a passphrase in the environment or a key file created with a
    typed passphrase are never overridden."""
    from deploy.secrets import PASSPHRASE_ENV, PLATFORM_SECRETS, ensure_platform_secrets

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    settings = make_settings(tmp_path / "home")
    ensure_platform_secrets(settings)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)  # `up` exports it for its children; a new process has none
    side = settings.home / "secrets.enc.passphrase"
    assert side.stat().st_mode & 0o777 == 0o600
    # a later process (the worker, the gateway, the CLI) reads the same secrets through the file beside it
    fresh = SecretProvider.from_settings(settings)
    assert [fresh.named_secret(n).key_bytes() for n in PLATFORM_SECRETS] == [
        SecretProvider.from_settings(settings).named_secret(n).key_bytes() for n in PLATFORM_SECRETS]
    assert control_signing_key(settings, create=False)[1] == fresh.named_secret("control-signing").key_bytes()
    # a passphrase set by the operator: used, nothing written beside the new file
    other = make_settings(tmp_path / "other")
    monkeypatch.setenv(PASSPHRASE_ENV, PHRASE)
    ensure_platform_secrets(other)
    assert not (other.home / "secrets.enc.passphrase").exists()
    # a key file that exists without one (typed passphrase): never replaced by a generated one
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(SecretsError, match="set TRADELOOP_SECRETS_PASSPHRASE or run in a terminal"):
        ensure_platform_secrets(other)
    assert not (other.home / "secrets.enc.passphrase").exists()
