"""deploy.secrets: the three key stores (env, encrypted file, Vault KV v2 over real HTTP) and check_mode."""

from __future__ import annotations

import json
import os
import stat

import pytest

from deploy import secrets
from deploy.secrets import (EnvBackend, FileBackend, SecretProvider, SecretsError, VaultBackend, check_mode,
                            make_record, now)
from tests.conftest import make_settings
from tests.deploy.fake_vault import FakeVault

API, SECRET, PASS = "AKfake-api-key-0123456789", "SKfake-secret-abcdefghijklmnop", "PPfake-passphrase-42"


def record(name="main", venue="binance", permissions="read,trade", passphrase=None):
    return make_record(name, venue, API, SECRET, passphrase, permissions, now())


# ---- the record -------------------------------------------------------------------------------------------
def test_a_record_never_prints_its_credentials():
    rec = record(passphrase=PASS)
    for text in (repr(rec), str(rec), f"{rec.api_key}", json.dumps(rec.describe()), repr(rec.secret)):
        assert API not in text and SECRET not in text and PASS not in text
    assert "****" in repr(rec)
    assert rec.ccxt_config() == {"apiKey": API, "secret": SECRET, "password": PASS}
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(rec.secret)


def test_withdraw_and_unknown_permissions_and_bad_names_are_refused():
    with pytest.raises(SecretsError, match="'withdraw' refused.*without withdrawal rights"):
        record(permissions="read,trade,withdraw")
    with pytest.raises(SecretsError, match="must be some of read,trade, got margin"):
        record(permissions="margin")
    with pytest.raises(SecretsError, match="key name 'Main Key'"):
        record(name="Main Key")
    with pytest.raises(SecretsError, match="venue 'kraken' is not one of binance, coinbase"):
        record(venue="kraken")
    assert record(permissions="READ, read").permissions == ("read",)


# ---- env --------------------------------------------------------------------------------------------------
def test_env_backend_reads_declared_keys_and_is_read_only():
    env = {"TRADELOOP_KEY_MAIN_VENUE": "binance", "TRADELOOP_KEY_MAIN_API_KEY": API,
           "TRADELOOP_KEY_MAIN_SECRET": SECRET, "TRADELOOP_KEY_MAIN_PERMISSIONS": "read",
           "TRADELOOP_KEY_CB_1_VENUE": "coinbase", "TRADELOOP_KEY_CB_1_API_KEY": "cb-key-123456",
           "TRADELOOP_KEY_CB_1_SECRET": "cb-secret-123456", "TRADELOOP_KEY_CB_1_PASSPHRASE": PASS,
           "TRADELOOP_KEY_HALF_API_KEY": "only-the-key", "UNRELATED": "x"}
    backend = EnvBackend(env)
    main = backend.get("main")
    assert (main.venue, main.api_key.reveal(), main.secret.reveal(), main.permissions) == \
        ("binance", API, SECRET, ("read",))
    assert backend.get("cb_1").passphrase.reveal() == PASS
    assert backend.get("cb_1").permissions == ("read", "trade")  # the default when not declared
    with pytest.raises(SecretsError, match="TRADELOOP_KEY_HALF_VENUE and TRADELOOP_KEY_HALF_SECRET not set"):
        backend.get("half")
    with pytest.raises(SecretsError, match="no key 'other' in the environment"):
        backend.get("other")
    with pytest.raises(SecretsError, match="'withdraw' refused"):
        EnvBackend({**env, "TRADELOOP_KEY_MAIN_PERMISSIONS": "trade,withdraw"}).get("main")
    with pytest.raises(SecretsError, match="read-only"):
        backend.put(record())
    del env["TRADELOOP_KEY_HALF_API_KEY"]
    assert [r.name for r in backend.list()] == ["cb_1", "main"]


# ---- file -------------------------------------------------------------------------------------------------
def _file(path, phrase="correct horse battery staple"):
    return FileBackend(path, passphrase=lambda new: phrase)


def test_file_backend_round_trip_encrypted_owner_only(tmp_path):
    path = tmp_path / "home" / "secrets.enc"
    store = _file(path)
    assert store.list() == []
    store.put(record(passphrase=PASS))
    store.put(record("second", "coinbase", "read"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_text()
    assert API not in raw and SECRET not in raw and PASS not in raw
    head = json.loads(raw)
    assert head["kdf"] == "scrypt" and len(head["salt"]) >= 20

    again = _file(path)  # another process: only the passphrase
    main = again.get("main")
    assert (main.api_key.reveal(), main.secret.reveal(), main.passphrase.reveal()) == (API, SECRET, PASS)
    assert [(r.name, r.venue, r.permissions, r.backend) for r in again.list()] == \
        [("main", "binance", ("read", "trade"), "file"), ("second", "coinbase", ("read",), "file")]
    assert main.created_at is not None

    with pytest.raises(SecretsError, match="key 'main' exists"):
        again.put(record())
    again.remove("main")
    salt_before = head["salt"]
    assert [r.name for r in _file(path).list()] == ["second"]
    assert json.loads(path.read_text())["salt"] != salt_before  # every write: a fresh salt
    with pytest.raises(SecretsError, match="no key 'main'"):
        again.remove("main")
    assert sorted(os.listdir(path.parent)) == ["secrets.enc", "secrets.enc.lock"]  # no temporary file left


def test_concurrent_adds_keep_every_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "secrets.enc"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: _file(path).put(record(f"k{i}")), range(4)))
    assert [r.name for r in _file(path).list()] == ["k0", "k1", "k2", "k3"]


def test_wrong_passphrase_is_one_clear_line(tmp_path):
    path = tmp_path / "secrets.enc"
    _file(path).put(record())
    with pytest.raises(SecretsError) as err:
        _file(path, "not the passphrase").list()
    message = str(err.value)
    assert message == f"cannot open {path}: wrong passphrase, or the file was altered"
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_tampered_file_is_refused(tmp_path):
    path = tmp_path / "secrets.enc"
    _file(path).put(record())
    head = json.loads(path.read_text())
    token = head["token"]
    flipped = token[:60] + ("A" if token[60] != "A" else "B") + token[61:]
    path.write_text(json.dumps({**head, "token": flipped}))
    with pytest.raises(SecretsError, match="wrong passphrase, or the file was altered"):
        _file(path).list()
    path.write_text(json.dumps({**head, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}))  # another salt: another key
    with pytest.raises(SecretsError, match="wrong passphrase, or the file was altered"):
        _file(path).list()
    path.write_text("not json at all")
    with pytest.raises(SecretsError, match="is not a tradeloop key file"):
        _file(path).list()


def test_the_passphrase_comes_from_the_environment_or_a_terminal(tmp_path, monkeypatch):
    monkeypatch.delenv(secrets.PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(SecretsError, match="set TRADELOOP_SECRETS_PASSPHRASE or run in a terminal"):
        FileBackend(tmp_path / "s.enc").put(record())
    monkeypatch.setenv(secrets.PASSPHRASE_ENV, "from-the-env")
    FileBackend(tmp_path / "s.enc").put(record())
    assert FileBackend(tmp_path / "s.enc").get("main").secret.reveal() == SECRET


# ---- vault ------------------------------------------------------------------------------------------------
def test_vault_backend_against_a_kv2_http_server():
    with FakeVault(token="s.test-token-123456") as vault:
        store = VaultBackend(vault.url, "secret", "tradeloop/keys", token="s.test-token-123456")
        assert store.list() == []
        store.put(record(passphrase=PASS))
        store.put(record("second", "coinbase", "read"))
        assert set(vault.data) == {"tradeloop/keys/main", "tradeloop/keys/second"}
        assert vault.data["tradeloop/keys/main"][0]["data"]["api_key"] == API
        main = store.get("main")
        assert (main.api_key.reveal(), main.secret.reveal(), main.passphrase.reveal(), main.backend) == \
            (API, SECRET, PASS, "vault")
        assert [r.name for r in store.list()] == ["main", "second"]
        with pytest.raises(SecretsError, match="key 'main' exists in vault"):
            store.put(record())
        store.remove("main")
        assert set(vault.data) == {"tradeloop/keys/second"}
        assert ("DELETE", "/v1/secret/metadata/tradeloop/keys/main") in vault.requests
        assert ("LIST", "/v1/secret/metadata/tradeloop/keys") in vault.requests
        assert ("GET", "/v1/secret/data/tradeloop/keys/main") in vault.requests
        with pytest.raises(SecretsError, match="no key 'main' in vault at secret/tradeloop/keys"):
            store.get("main")

        wrong = VaultBackend(vault.url, "secret", "tradeloop/keys", token="s.wrong-token-00000")
        with pytest.raises(SecretsError, match="permission denied") as err:
            wrong.list()
        assert "s.wrong-token" not in str(err.value)
    url = vault.url
    with pytest.raises(SecretsError, match=f"vault at {url} is unreachable"):
        VaultBackend(url, "secret", "tradeloop/keys", token="s.test-token-123456").list()


def test_vault_needs_a_token(monkeypatch):
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with pytest.raises(SecretsError, match="set VAULT_TOKEN"):
        VaultBackend("http://127.0.0.1:1", "secret", "x")


# ---- check_mode -------------------------------------------------------------------------------------------
def test_check_mode_needs_an_existing_trading_key_of_the_venue(tmp_path, monkeypatch):
    monkeypatch.setenv(secrets.PASSPHRASE_ENV, "pw")
    paper = make_settings(tmp_path)
    assert check_mode(paper) is None
    sandbox = make_settings(tmp_path, mode="sandbox", venue="binance", venue_key="main")
    with pytest.raises(SecretsError, match="TRADELOOP_MODE=sandbox: no key 'main' in"):
        check_mode(sandbox)
    provider = SecretProvider.from_settings(sandbox)
    provider.add(record("readonly", permissions="read"))
    provider.add(record("cb", venue="coinbase"))
    provider.add(record())
    assert check_mode(sandbox).name == "main"
    with pytest.raises(SecretsError, match="key 'readonly' lacks the 'trade' permission"):
        check_mode(sandbox.model_copy(update={"venue_key": "readonly"}))
    with pytest.raises(SecretsError, match="key 'cb' is for coinbase, but TRADELOOP_VENUE=binance"):
        check_mode(sandbox.model_copy(update={"venue_key": "cb"}))
    live = make_settings(tmp_path, mode="live", venue="binance", venue_key="main",
                         live_confirm="I accept real-money trading")
    assert check_mode(live).api_key.reveal() == API


def test_check_mode_needs_no_key_for_interactive_brokers(tmp_path, monkeypatch):
    # the logged-in TWS / IB Gateway holds IB's credentials: no key store is opened (no passphrase asked)
    monkeypatch.delenv(secrets.PASSPHRASE_ENV, raising=False)
    for mode, extra in (("sandbox", {}), ("live", {"live_confirm": "I accept real-money trading"})):
        settings = make_settings(tmp_path, mode=mode, venue="ib", **extra)
        assert settings.venue_key is None
        assert check_mode(settings) is None
    assert not (tmp_path / "secrets.enc").exists()


def test_a_prompted_passphrase_is_handed_to_the_services_up_starts(tmp_path, monkeypatch):
    """`up` in a terminal: the worker it starts has no terminal, so it gets the passphrase in its environment."""
    monkeypatch.setenv(secrets.PASSPHRASE_ENV, "")  # recorded, so the test's export is undone afterwards
    monkeypatch.delenv(secrets.PASSPHRASE_ENV)
    provider = SecretProvider(_file(tmp_path / "secrets.enc", "typed-at-the-prompt"))
    provider.add(record())
    secrets.export_passphrase(provider)
    assert os.environ[secrets.PASSPHRASE_ENV] == "typed-at-the-prompt"
    assert FileBackend(tmp_path / "secrets.enc").get("main").secret.reveal() == SECRET
    secrets.export_passphrase(SecretProvider(EnvBackend({})))  # other stores: nothing to hand over
