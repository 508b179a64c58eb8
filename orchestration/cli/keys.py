"""`tradeloop keys add | list | remove`: exchange API keys in the configured key store (deploy/secrets.py).

Credentials are read from a hidden prompt or, with --stdin, from standard input -- never from the command line,
where the shell history and `ps` would show them. Nothing here prints a credential.
"""

from __future__ import annotations

import sys

import click


def _provider():
    from deploy.settings import get_settings
    from deploy.secrets import SecretProvider

    return SecretProvider.from_settings(get_settings())


def _fail(exc: Exception) -> None:
    from deploy.redaction import scrub_exception

    click.echo(f"error: keys: {scrub_exception(exc)}", err=True)
    sys.exit(2)


@click.group()
def keys() -> None:
    """Exchange API keys for sandbox and live modes (TRADELOOP_SECRETS_BACKEND: file, env or vault)."""
    from deploy.redaction import install

    install()


@keys.command()
@click.argument("name")
@click.option("--venue", required=True, type=click.Choice(["binance", "coinbase"]), help="Exchange of the key.")
@click.option("--permissions", default="read,trade", show_default=True,
              help="What the key may do at the exchange, comma-separated: read, trade (withdraw is refused).")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the api key, the secret and (optional) a passphrase as lines of standard input "
                   "(for scripts); a PEM secret may be one line with its line breaks written as \\n.")
def add(name: str, venue: str, permissions: str, from_stdin: bool) -> None:
    """Store a key NAME (1-32 of a-z, 0-9, _) for --venue; the credentials are asked for, hidden."""
    from deploy.secrets import SecretsError, check_name, check_permissions, make_record, now

    try:
        check_name(name)
        check_permissions(permissions)  # refuse withdraw before asking for anything
        provider = _provider()
        if from_stdin:
            lines = [line.rstrip("\r\n") for line in sys.stdin.read().splitlines()]
            lines += [""] * (3 - len(lines))
            api_key, secret, passphrase = lines[0].strip(), lines[1].strip(), lines[2].strip()
        else:
            api_key = click.prompt("api key", hide_input=True).strip()
            secret = click.prompt("secret", hide_input=True).strip()
            passphrase = click.prompt("passphrase (Enter for none)", hide_input=True, default="",
                                      show_default=False).strip()
        if not api_key or not secret:
            raise SecretsError("the api key and the secret are both needed (one per line with --stdin)")
        if secret.startswith("-----BEGIN"):
            secret = secret.replace("\\n", "\n")
        record = make_record(name, venue, api_key, secret, passphrase or None, permissions, now(),
                             provider.backend.name)
        provider.add(record)
    except (SecretsError, click.Abort) as exc:
        _fail(exc if isinstance(exc, SecretsError) else SecretsError("cancelled"))
    click.echo(f"key {name!r} stored ({venue}, {','.join(record.permissions)}) in the {record.backend} key store")


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
def list_(as_json: bool) -> None:
    """Name, venue, permissions, created, backend of every key (never the credentials)."""
    import json

    from deploy.secrets import SecretsError

    try:
        rows = [record.describe() for record in _provider().list()]
    except SecretsError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no keys (add one: tradeloop keys add NAME --venue binance)")
        return
    click.echo(f"{'name':<20} {'venue':<9} {'permissions':<12} {'created':<26} backend")
    for row in rows:
        click.echo(f"{row['name']:<20} {row['venue']:<9} {','.join(row['permissions']):<12} "
                   f"{row['created'] or '-':<26} {row['backend']}")


@keys.command()
@click.argument("name")
def remove(name: str) -> None:
    """Delete key NAME from the key store (revoke it at the exchange too)."""
    from deploy.secrets import SecretsError

    try:
        provider = _provider()
        provider.remove(name)
    except SecretsError as exc:
        _fail(exc)
    click.echo(f"key {name!r} removed from the {provider.backend.name} key store; revoke it at the exchange too")
