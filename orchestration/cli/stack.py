"""`tradeloop up | down | status | migrate`."""

from __future__ import annotations

import sys

import click


def _settings():
    from deploy.settings import get_settings

    return get_settings()


@click.command()
def up() -> None:
    """Start the embedded stack (PostgreSQL, broker, MLflow, Dagster, a Faust worker) and wait until healthy."""
    from deploy.secrets import SecretProvider, SecretsError, check_mode, ensure_platform_secrets, export_passphrase
    from deploy.stack.process import StackError
    from deploy.stack.stack import up as stack_up

    settings = _settings()
    try:
        # sandbox/live: the named key must exist for the venue and allow trading, before anything starts
        # (ib: no key store -- the logged-in gateway holds the credentials)
        keyless = settings.mode == "paper" or settings.venue == "ib"
        provider = None if keyless else SecretProvider.from_settings(settings)
        key = check_mode(settings, provider)
        # the control-signing key (gateway -> worker) and the gateway's token key, before any service needs them
        ensure_platform_secrets(settings)
    except SecretsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if key is not None:
        export_passphrase(provider)
        click.echo(f"tradeloop: mode {settings.mode} on {settings.venue} with key {key.name!r}")
    click.echo(f"tradeloop: starting the stack (state in {settings.home})")
    try:
        records = stack_up(settings, echo=click.echo)
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted: stopped what this run had started", err=True)
        sys.exit(130)
    admin_password = _first_admin(settings)
    click.echo("")
    click.echo(f"  Gateway      {records['gateway'].url}/api/docs (the API; log in there)")
    click.echo(f"  Dagster UI   {records['dagster-webserver'].url}")
    click.echo(f"  MLflow UI    {records['mlflow'].url}")
    click.echo(f"  Worker web   {records['worker'].url}/health")
    click.echo(f"  Data Docs    {records['docs'].url}/data_docs/index.html")
    click.echo(f"  Supervisor   {records['supervisor'].url}/metrics (restarts a service that dies)")
    click.echo("tradeloop is up. `tradeloop status` shows each service; `tradeloop down` stops them.")
    if admin_password:
        click.echo("")
        click.echo(f"  First login: user 'admin', one-time password {admin_password}")
        click.echo("  It is shown only now and stored only as a hash; change it at the first login "
                   "(POST /api/v1/auth/password).")


def _first_admin(settings) -> str | None:
    """The first admin's one-time password when this `up` created the admin (None afterwards)."""
    import sqlalchemy as sa

    from orchestration.gateway.app import database_url
    from orchestration.gateway.users import ensure_first_admin

    engine = sa.create_engine(database_url(settings))
    try:
        return ensure_first_admin(engine)
    finally:
        engine.dispose()


@click.command()
def down() -> None:
    """Stop every service gracefully; the data stays for the next `up`."""
    from deploy.stack.stack import down as stack_down

    stopped = stack_down(_settings(), echo=click.echo)
    click.echo("tradeloop is down." if stopped else "nothing was running.")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per service.")
def status(as_json: bool) -> None:
    """Show each service with its pid, port and health. Exit 0 only if all are running."""
    import json

    from deploy.stack.stack import status as stack_status

    rows = stack_status(_settings())
    if as_json:
        click.echo(json.dumps([row.__dict__ for row in rows]))
    else:
        click.echo(f"{'service':<18} {'state':<10} {'pid':>7} {'port':>6} {'restarts':>8}  url")
        for row in rows:
            click.echo(f"{row.name:<18} {row.state:<10} {row.pid or '-':>7} {row.port or '-':>6} "
                       f"{row.restarts:>8}  {row.url}")
    sys.exit(0 if all(row.state in ("running", "external") for row in rows) else 3)


@click.command()
def migrate() -> None:
    """Apply database migrations to DATABASE_URL (or the embedded server, which must be up: as its migrate role,
    then the roles' grants)."""
    from deploy import redaction
    from deploy.stack import pgroles
    from storage import migrations

    settings = _settings()
    try:
        url = settings.database_url_for("migrate")
        if settings.database_url:
            migrations.upgrade(url)
        else:
            pgroles.migrate_and_grant(settings)
        revision = migrations.current(url)
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback (nor a password)
        where = pgroles.redacted(settings.database_url) if settings.database_url else "the embedded server"
        click.echo(f"error: migrations failed on {where}: {redaction.scrub_exception(exc)}", err=True)
        sys.exit(1)
    click.echo(f"schema at revision {revision}")
