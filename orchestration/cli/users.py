"""`tradeloop users add | list | disable` and `tradeloop api-keys create | list | revoke`: the gateway's
identities in PostgreSQL (orchestration/gateway/users.py holds the rules; the admin API uses the same).

A password comes from TRADELOOP_PASSWORD or a hidden prompt -- never from the command line, where the shell
history and `ps` would show it. An API key's secret is printed once, at creation; only its digest is kept.
"""

from __future__ import annotations

import json
import os
import sys

import click

PASSWORD_ENV = "TRADELOOP_PASSWORD"
ROLE_CHOICES = ["viewer", "trader", "risk_officer", "admin"]


def _engine():
    from deploy.errors import StackError
    from deploy.settings import get_settings
    from orchestration.gateway.app import database_url
    from storage import db

    try:  # the gateway role's password comes from the key store `up` filled
        return db.engine(database_url(get_settings()))
    except StackError as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    from deploy.redaction import scrub_exception

    click.echo(f"error: {scrub_exception(exc)}", err=True)
    sys.exit(2)


def _call(fn, *args, **kwargs):
    """Run one change; a refusal or an unreachable database is one line and exit status 2."""
    import sqlalchemy as sa

    from orchestration.gateway.users import UserError

    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        _fail(exc)
    except sa.exc.OperationalError:
        _fail(RuntimeError("cannot reach PostgreSQL (is the platform up? `tradeloop up`)"))


def _password() -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        _fail(RuntimeError(f"the password comes from {PASSWORD_ENV} or a terminal prompt"))
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


def _who() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@click.group()
def users() -> None:
    """People who log in to the gateway (OAuth2 password flow)."""
    from deploy.redaction import install

    install()


@users.command()
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLE_CHOICES),
              help="viewer: reads; trader: + strategies, orders; risk_officer: + kill switch, limits; admin: all.")
@click.option("--must-change/--no-must-change", default=False, show_default=True,
              help="The user must change the password at the first login.")
@click.option("--account", "accounts", multiple=True,
              help="A trading account the user may see and act on (repeatable; default: every account).")
def add(username: str, role: str, must_change: bool, accounts: tuple[str, ...]) -> None:
    """Add USERNAME with --role; the password is asked for (or TRADELOOP_PASSWORD)."""
    from orchestration.gateway import users as u

    _call(u.check_username, username)
    _call(u.check_accounts, accounts)
    user = _call(u.add_user, _engine(), username, _password(), role, must_change=must_change, accounts=accounts,
                 actor=_who())
    scope = f", accounts {','.join(user.accounts)}" if user.accounts else ""
    click.echo(f"user {user.username!r} added ({user.role}{scope})")


@users.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of users.")
def list_users(as_json: bool) -> None:
    """Every user: name, role, disabled, must change password, locked until (never a hash)."""
    from orchestration.gateway import users as u

    rows = [x.brief() for x in _call(u.list_users, _engine())]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no users (`tradeloop up` creates the first admin)")
        return
    click.echo(f"{'username':<24} {'role':<13} {'disabled':<9} {'must_change':<12} locked_until")
    for r in rows:
        click.echo(f"{r['username']:<24} {r['role']:<13} {str(r['disabled']).lower():<9} "
                   f"{str(r['must_change']).lower():<12} {r['locked_until'] or '-'}")


@users.command()
@click.argument("username")
def disable(username: str) -> None:
    """Disable USERNAME: its tokens stop working at once, its refresh tokens are revoked."""
    from orchestration.gateway import users as u

    _call(u.set_disabled, _engine(), username, True, actor=_who())
    click.echo(f"user {username!r} disabled")


@click.group("api-keys")
def api_keys() -> None:
    """Keys for programs (OAuth2 client credentials), each with a name, an owner and scopes."""
    from deploy.redaction import install

    install()


@api_keys.command()
@click.argument("name")
@click.option("--owner", required=True, help="The user the key acts for (its scopes cannot exceed the owner's role).")
@click.option("--scopes", default="read", show_default=True, help="Comma-separated: read, trade, risk, admin.")
def create(name: str, owner: str, scopes: str) -> None:
    """Create key NAME; its client id and secret are printed once."""
    from orchestration.gateway import users as u

    key, secret = _call(u.create_api_key, _engine(), owner, name, scopes, actor=_who())
    click.echo(f"api key {key.name!r} of {key.owner!r} created, scopes {','.join(key.scopes)}")
    click.echo(f"client_id:     {key.key_id}")
    click.echo(f"client_secret: {secret}")
    click.echo("the secret is shown only now: store it where the program reads it", err=True)


@api_keys.command(name="list")
@click.option("--owner", default=None, help="Only the keys of this user.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of keys.")
def list_keys(owner: str | None, as_json: bool) -> None:
    """Every key: id, name, owner, scopes, created, last used, revoked (never a secret)."""
    from orchestration.gateway import users as u

    rows = [k.brief() for k in _call(u.list_api_keys, _engine(), owner)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no api keys (create one: tradeloop api-keys create NAME --owner USER --scopes read)")
        return
    click.echo(f"{'client_id':<22} {'name':<16} {'owner':<16} {'scopes':<20} {'last_used':<26} revoked")
    for r in rows:
        click.echo(f"{r['key_id']:<22} {r['name']:<16} {r['owner']:<16} {','.join(r['scopes']):<20} "
                   f"{r['last_used_at'] or '-':<26} {r['revoked_at'] or '-'}")


@api_keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (its client id): no new tokens, and its current ones stop working."""
    from orchestration.gateway import users as u

    _call(u.revoke_api_key, _engine(), key_id, actor=_who())
    click.echo(f"api key {key_id!r} revoked")
