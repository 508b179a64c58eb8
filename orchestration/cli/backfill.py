"""`tradeloop backfill`: submit a historical-data backfill to the running Dagster (it shows in the UI)."""

from __future__ import annotations

import sys
from datetime import date, timedelta

import click


@click.command()
@click.option("--start", "start", help="First day (YYYY-MM-DD). Default: the history start.")
@click.option("--days", type=click.IntRange(1, 3660), default=7, show_default=True, help="Number of daily partitions.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol (BASE/QUOTE); repeat for several. Default: all.")
@click.option("--wait/--no-wait", default=False, help="Wait until the backfill finishes.")
def backfill(start: str | None, days: int, symbols: tuple[str, ...], wait: bool) -> None:
    """Materialise `ohlcv` and `ohlcv_clean` for DAYS days x SYMBOLS through the Dagster daemon."""
    from deploy.settings import get_settings
    from orchestration.dagster_client import DagsterClientError, launch_backfill, wait_backfill

    settings = get_settings()
    chosen = list(symbols) or settings.symbols
    unknown = [s for s in chosen if s not in settings.symbols]
    if unknown:
        click.echo(f"error: unknown symbol(s) {unknown}; configured: {settings.symbols} (TRADELOOP_SYMBOLS)", err=True)
        sys.exit(2)
    try:
        first = date.fromisoformat(start or settings.history_start)
    except ValueError:
        click.echo(f"error: --start {start!r} is not a date (YYYY-MM-DD)", err=True)
        sys.exit(2)
    if first < date.fromisoformat(settings.history_start):
        click.echo(f"error: --start {first} is before the history start {settings.history_start}", err=True)
        sys.exit(2)
    last = first + timedelta(days=days - 1)
    if last >= date.today():
        click.echo(f"error: the last day {last} is not complete yet (daily partitions end yesterday)", err=True)
        sys.exit(2)
    partitions = [f"{(first + timedelta(days=i)).isoformat()}|{s.replace('/', '-')}"
                  for i in range(days) for s in chosen]
    url = f"http://{settings.host}:{settings.dagster_port}"
    try:
        backfill_id = launch_backfill(url, partitions, [["ohlcv"], ["ohlcv_clean"]])
        click.echo(f"backfill {backfill_id}: {len(partitions)} partitions ({days} days x {len(chosen)} symbols); "
                   f"{url}/overview/backfills/{backfill_id}")
        if wait:
            status = wait_backfill(url, backfill_id, timeout_s=3600)
            click.echo(f"backfill {backfill_id}: {status}")
            sys.exit(0 if status == "COMPLETED_SUCCESS" else 1)
    except DagsterClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
