"""`tradeloop strategy status|promote|rollback|shadow|compare`: the stream's strategy releases.

Releases live in PostgreSQL (storage/releases.py); the running worker polls them and swaps a slot to a
newly live release without a restart (streaming/releases.py).  Every change here is an audit_log row.
"""

from __future__ import annotations

import json
import sys

import click

from orchestration.cli.ml import _db_url, paired_test_options, print_shadow_comparison


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 -- no user name (a container): still say where it came from
        return "cli"


def slot_status(conn, account: str, configured: dict[str, tuple[str, dict]]) -> dict:
    """Per slot of the stream's configuration: what it runs by the records (operator swaps, live releases,
    the newest decision winning, as the worker applies them) and the candidates of its strategy."""
    from storage import releases as rel

    runtime = rel.load_runtime(conn, account)
    running = rel.running(conn, account)
    slots = {}
    for slot, (name, params) in sorted(configured.items()):
        swapped = runtime.slots.get(slot)
        if swapped is not None:
            name, params = swapped[0], swapped[1]
        live = running.get(name, {}).get("live")
        shadow = running.get(name, {}).get("shadow")
        row: dict = {"strategy": name}
        if live is not None and (swapped is None or live.promoted_ns > swapped[2]):
            row.update(release=live.version, params=live.params, since=live.promoted_at.isoformat())
        else:
            row.update(release=None, params=params,
                       source="operator swap" if swapped is not None else "configuration (no release)")
        row["shadow"] = {"release": shadow.version, "params": shadow.params} if shadow is not None else None
        slots[slot] = row
    return {"account": account, "slots": slots,
            "limit_overrides": runtime.limits,
            "releases": {s: [r.brief() for r in rel.releases(conn, account, s)]
                         for s in sorted({r.strategy for r in rel.releases(conn, account)})}}


def _configured() -> dict[str, tuple[str, dict]]:
    from deploy.settings import get_settings
    from streaming import config

    return get_settings().stream_strategies or config.STRATEGIES


@click.group("strategy")
def strategy() -> None:
    """Strategy releases: status, promote, rollback, shadow (A/B) and the shadow comparison."""


@strategy.command("status")
def status() -> None:
    """The release each slot runs, its shadow, the limit overrides, and every release with its status."""
    from deploy.settings import get_settings
    from storage import db

    with db.engine(_db_url()).connect() as conn:
        out = slot_status(conn, get_settings().account, _configured())
    json.dump(out, sys.stdout, default=str, indent=2)
    click.echo()


def _change(fn) -> object:
    """``fn(conn, account)`` in one transaction; a ReleaseError (unknown strategy or version...) is one line."""
    from deploy.settings import get_settings
    from storage import db
    from storage.releases import ReleaseError

    try:
        with db.engine(_db_url()).begin() as conn:
            return fn(conn, get_settings().account)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from None


@strategy.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(1))
@click.option("--reason", required=True, help="Why (goes to audit_log).")
@click.option("--force", is_flag=True, help="Promote a release the gate refused.")
def promote(name: str, version: int, reason: str, force: bool) -> None:
    """Make release VERSION of strategy NAME the live one (the stream swaps to it without a restart)."""
    from storage import releases as rel

    frm, to = _change(lambda conn, account: rel.promote(conn, account, name, version, actor=_actor(), reason=reason, force=force))
    click.echo(f"{name}: live release {'v' + str(frm) if frm else 'none'} -> v{to}")


@strategy.command("rollback")
@click.argument("name")
@click.option("--reason", required=True, help="Why (goes to audit_log).")
def rollback(name: str, reason: str) -> None:
    """Give strategy NAME's live release back to the previously promoted one."""
    from storage import releases as rel

    frm, to = _change(lambda conn, account: rel.rollback(conn, account, name, actor=_actor(), reason=reason))
    click.echo(f"{name}: live release v{frm} -> v{to} (rolled back)")


@strategy.command("shadow")
@click.argument("name")
@click.argument("version", type=click.IntRange(1), required=False)
@click.option("--stop", is_flag=True, help="Stop the shadow of strategy NAME.")
@click.option("--reason", default="", help="Why (goes to audit_log).")
def shadow(name: str, version: int | None, stop: bool, reason: str) -> None:
    """Run release VERSION of NAME in shadow beside the live one (decisions recorded, never sent)."""
    from storage import releases as rel

    if stop == (version is not None):
        raise click.UsageError("give a VERSION to start a shadow, or --stop (not both)")
    before = _change(lambda conn, account: rel.set_shadow(conn, account, name, None if stop else version, actor=_actor(),
                                                  reason=reason or ("stop" if stop else "A/B in shadow")))
    click.echo(f"{name}: shadow {'v' + str(before) if before else 'none'} -> {'none' if stop else 'v' + str(version)}")


@strategy.command("compare")
@click.argument("slot")
@paired_test_options
def compare(slot: str, horizon_bars: int, min_n: int, alpha: float) -> None:
    """The shadow release vs the live one in SLOT on the same bars: the paired test of model shadow mode."""
    print_shadow_comparison(slot, horizon_bars, min_n, alpha)
