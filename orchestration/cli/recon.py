"""`tradeloop recon runs` and `tradeloop recon baseline`: the account's reconciliation with its venue.

Both read and write Postgres directly (the system of record), not the worker: `runs` lists what the latest
runs found; `baseline` adopts the venue balances a run saw as the account's new baseline, after a deposit or
a withdrawal made the balances drift (audited).  Lifting the account's REDUCING / HALTED state stays the
operator's `tradeloop resume`.
"""

from __future__ import annotations

import getpass
import json

import click

from orchestration.cli.ml import _db_url


def _account(account: str | None) -> str:
    from deploy.settings import get_settings

    return account or get_settings().account


@click.group("recon")
def recon() -> None:
    """Reconciliation of the account with its venue (sandbox and live accounts)."""


@recon.command("runs")
@click.option("--account", default=None, help="Account (default: TRADELOOP_ACCOUNT).")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000))
def runs(account: str | None, limit: int) -> None:
    """The latest runs, newest first, as JSON: verdict, reason, differences."""
    from storage import db
    from storage import reconcile as sr

    with db.engine(_db_url()).connect() as conn:
        out = sr.runs(conn, _account(account), limit)
    click.echo(json.dumps(out, indent=2, default=str))


@recon.command("baseline")
@click.option("--account", default=None, help="Account (default: TRADELOOP_ACCOUNT).")
@click.option("--run", "run_id", default=None, help="Run whose venue balances to adopt (default: the latest "
                                                    "run that compared balances).")
@click.option("--reason", required=True, help="Why (written to audit_log), e.g. 'deposit of 5000 USDT'.")
@click.option("--who", default=None, help="Who (default: the current user).")
def baseline(account: str | None, run_id: str | None, reason: str, who: str | None) -> None:
    """Adopt the venue's balances seen by a run as the expected balances' new baseline."""
    from storage import db
    from storage import reconcile as sr

    acct = _account(account)
    try:
        who = who or getpass.getuser()
    except (KeyError, OSError):
        who = "operator"
    try:
        with db.engine(_db_url()).begin() as conn:
            rid, _ts, balances = sr.adopt_run_balances(conn, acct, run_id, who=who, reason=reason)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    shown = ", ".join(f"{a} {q}" for a, q in sorted(balances.items())) or "(empty)"
    click.echo(f"{acct}: baseline adopted from run {rid}: {shown}")
