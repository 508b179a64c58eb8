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
