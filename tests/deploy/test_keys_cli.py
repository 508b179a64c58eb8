"""`tradeloop keys add | list | remove` as a user runs them: real processes, the real encrypted file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deploy.settings import REPO_ROOT

TRADELOOP = str(Path(sys.executable).parent / "tradeloop")
API, SECRET = "AKcli-api-key-0123456789abcdef", "SKcli-secret-0123456789abcdefghij"


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELOOP_", "VAULT_"))}
    # PYTHONPATH: the code of this checkout, whatever the venv's editable install points at
    env.update(TRADELOOP_HOME=str(home), TRADELOOP_SECRETS_PASSPHRASE="cli-pass-phrase", PYTHONPATH=str(REPO_ROOT))
    env.update(extra)
    return env


def tradeloop(home: Path, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRADELOOP, *args], env=env_for(home, **extra), input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_add_list_remove_with_the_file_store(tmp_path):
    home = tmp_path / "home"
    added = tradeloop(home, "keys", "add", "main", "--venue", "binance", "--stdin", stdin=f"{API}\n{SECRET}\n")
    assert added.returncode == 0, added.stderr
    assert "key 'main' stored (binance, read,trade) in the file key store" in added.stdout
    tradeloop(home, "keys", "add", "watch", "--venue", "coinbase", "--permissions", "read", "--stdin",
              stdin="cb-key-0123456789\ncb-secret-0123456789\ncb-pass-0123456789\n")

    listed = tradeloop(home, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.strip().splitlines()
    assert header.split() == ["name", "venue", "permissions", "created", "backend"]
    assert [row.split()[:3] + row.split()[4:] for row in rows] == [["main", "binance", "read,trade", "file"],
                                                                  ["watch", "coinbase", "read", "file"]]
    as_json = json.loads(tradeloop(home, "keys", "list", "--json").stdout)
    assert [r["name"] for r in as_json] == ["main", "watch"] and all(r["created"] for r in as_json)

    # the file holds no credential in clear, and nothing printed one
    stored = (home / "secrets.enc").read_text()
    for text in (stored, listed.stdout, listed.stderr, added.stdout, added.stderr):
        assert API not in text and SECRET not in text

    removed = tradeloop(home, "keys", "remove", "main")
    assert removed.returncode == 0 and "revoke it at the exchange" in removed.stdout
    assert [r["name"] for r in json.loads(tradeloop(home, "keys", "list", "--json").stdout)] == ["watch"]
    assert "no key 'main'" in one_error_line(tradeloop(home, "keys", "remove", "main"))


def test_refusals_are_one_line_exit_2(tmp_path):
    home = tmp_path / "home"
    line = one_error_line(tradeloop(home, "keys", "add", "k", "--venue", "binance", "--permissions",
                                    "read,trade,withdraw", "--stdin", stdin=f"{API}\n{SECRET}\n"))
    assert "'withdraw' refused" in line
    assert not (home / "secrets.enc").exists()  # refused before anything was stored
    assert "api key and the secret are both needed" in one_error_line(
        tradeloop(home, "keys", "add", "k", "--venue", "binance", "--stdin", stdin=f"{API}\n"))
    tradeloop(home, "keys", "add", "k", "--venue", "binance", "--stdin", stdin=f"{API}\n{SECRET}\n")
    assert "key 'k' exists" in one_error_line(
        tradeloop(home, "keys", "add", "k", "--venue", "binance", "--stdin", stdin=f"{API}\n{SECRET}\n"))
    wrong = one_error_line(tradeloop(home, "keys", "list", TRADELOOP_SECRETS_PASSPHRASE="not-the-passphrase"))
    assert wrong == f"error: keys: cannot open {home / 'secrets.enc'}: wrong passphrase, or the file was altered"
    # without a terminal and without the variable: says how to give the passphrase
    no_phrase = env_for(home)
    del no_phrase["TRADELOOP_SECRETS_PASSPHRASE"]
    done = subprocess.run([TRADELOOP, "keys", "list"], env=no_phrase, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert "set TRADELOOP_SECRETS_PASSPHRASE or run in a terminal" in one_error_line(done)
    # the env store cannot be written; its keys are listed
    env_store = dict(TRADELOOP_SECRETS_BACKEND="env", TRADELOOP_KEY_ENVKEY_VENUE="binance",
                     TRADELOOP_KEY_ENVKEY_API_KEY=API, TRADELOOP_KEY_ENVKEY_SECRET=SECRET)
    assert "read-only" in one_error_line(tradeloop(home, "keys", "add", "x", "--venue", "binance", "--stdin",
                                                   stdin=f"{API}\n{SECRET}\n", **env_store))
    listed = tradeloop(home, "keys", "list", **env_store)
    assert listed.stdout.splitlines()[1].split() == ["envkey", "binance", "read,trade", "-", "env"]
    assert API not in listed.stdout + listed.stderr


def test_credentials_are_never_taken_from_the_command_line():
    from click.testing import CliRunner

    from orchestration.cli.keys import add

    assert not any(p.name in ("api_key", "secret", "passphrase") for p in add.params)
    result = CliRunner().invoke(add, ["main", "--venue", "binance", API, SECRET])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output.lower()


def test_the_keys_module_imports_only_click():
    code = ("import sys; before = set(sys.modules); import orchestration.cli.keys; "
            "print(sorted(m.split('.')[0] for m in set(sys.modules) - before))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=30)
    loaded = set(eval(done.stdout))
    assert not loaded & {"cryptography", "hvac", "pydantic", "pydantic_settings", "requests", "sqlalchemy"}, loaded


def test_prompted_credentials_are_hidden_and_a_pem_secret_keeps_its_lines(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deploy.secrets import FileBackend
    from deploy.settings import get_settings
    from orchestration.cli.keys import keys

    monkeypatch.setenv("TRADELOOP_HOME", str(tmp_path))
    monkeypatch.setenv("TRADELOOP_SECRETS_PASSPHRASE", "prompt-test-phrase")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(keys, ["add", "prompted", "--venue", "binance"], input=f"{API}\n{SECRET}\n\n")
        assert result.exit_code == 0, result.output
        assert API not in result.output and SECRET not in result.output  # hidden input is not echoed
        pem = "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIFakeFakeFakeFakeFakeFakeFakeFake\\n-----END EC PRIVATE KEY-----"
        result = CliRunner().invoke(keys, ["add", "cloud", "--venue", "coinbase", "--stdin"],
                                    input=f"organizations/o/apiKeys/k1234567\n{pem}\n")
        assert result.exit_code == 0, result.output
    finally:
        get_settings.cache_clear()
    store = FileBackend(tmp_path / "secrets.enc", passphrase=lambda new: "prompt-test-phrase")
    assert store.get("prompted").secret.reveal() == SECRET and store.get("prompted").passphrase is None
    assert store.get("cloud").secret.reveal().splitlines()[1] == "MHcCAQEEIFakeFakeFakeFakeFakeFakeFakeFake"


def test_the_vault_store_through_the_cli(tmp_path):
    from tests.deploy.fake_vault import FakeVault

    with FakeVault(token="s.cli-vault-token-1234") as vault:
        env = dict(TRADELOOP_SECRETS_BACKEND="vault", VAULT_ADDR=vault.url, VAULT_TOKEN="s.cli-vault-token-1234",
                   TRADELOOP_VAULT_MOUNT="secret", TRADELOOP_VAULT_PATH="desk/keys")
        added = tradeloop(tmp_path, "keys", "add", "main", "--venue", "binance", "--stdin",
                          stdin=f"{API}\n{SECRET}\n", **env)
        assert added.returncode == 0, added.stderr
        assert vault.data["desk/keys/main"][-1]["data"]["secret"] == SECRET
        listed = json.loads(tradeloop(tmp_path, "keys", "list", "--json", **env).stdout)
        assert [(r["name"], r["backend"]) for r in listed] == [("main", "vault")]
        assert tradeloop(tmp_path, "keys", "remove", "main", **env).returncode == 0
        assert vault.data == {}
        denied = one_error_line(tradeloop(tmp_path, "keys", "list", **{**env, "VAULT_TOKEN": "s.wrong-token-99"}))
        assert "permission denied" in denied and "s.wrong-token-99" not in denied
