"""`tradeloop simulate`: the whole platform over past days on an accelerated clock (orchestration/simulation)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click


@click.command("simulate")
@click.option("--start", required=True, help="First simulated day (YYYY-MM-DD, UTC).")
@click.option("--days", required=True, type=click.IntRange(1, 3660), help="Number of simulated days.")
@click.option("--seed", default=7, show_default=True, type=click.IntRange(0),
              help="Seed of the sim market (same seed, same timeline).")
@click.option("--history", type=click.Choice(["sim", "stored"]), default="sim", show_default=True,
              help="The market: the sim market of --seed, or the platform's stored history (market_data_clean "
                   "of its database; every simulated and warm-up day must be there).")
@click.option("--symbol", "symbols", multiple=True, help="Symbol (BASE/QUOTE); repeat for several. Default: all.")
@click.option("--warmup-days", default=3, show_default=True, type=click.IntRange(2, 60),
              help="Days of history before --start (feature warm-up and the first training data).")
@click.option("--retrain-every", default=7, show_default=True, type=click.IntRange(1),
              help="Scheduled retrain every N simulated days (and when the decay sensor fires).")
@click.option("--tune-every", default=7, show_default=True, type=click.IntRange(1), help="Tune every N days.")
@click.option("--tune-trials", default=8, show_default=True, type=click.IntRange(1), help="Optuna trials per tuning.")
@click.option("--report-every", default=0, show_default=True, type=click.IntRange(0),
              help="Tear sheets (dbt build) also every N days; 0: after the last day only.")
@click.option("--autogluon/--no-autogluon", default=False, show_default=True,
              help="Fit AutoGluon beside LightGBM at each retrain (about a minute per retrain).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the simulation (replaced). Default: <home>/simulations/<start>_<days>d_seed<seed>.")
def simulate(start: str, days: int, seed: int, history: str, symbols: tuple[str, ...], warmup_days: int, retrain_every: int,
             tune_every: int, tune_trials: int, report_every: int, autogluon: bool, out_dir: Path | None) -> None:
    """Run the platform on its own over past days of the sim market (or of its stored history): the stream's trader, the daily jobs
    (market data, features, retrain and gate, tuning, optimisation, reports) and the decay sensor. Prints a
    timeline of its decisions and writes a tear sheet; its database and MLflow store are its own."""
    from deploy.settings import get_settings
    from orchestration.simulation import SimulationError, SimulationSpec, run_simulation

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise click.UsageError(f"--start {start!r} is not a date (YYYY-MM-DD)") from None
    configured = get_settings().symbols
    unknown = [s for s in symbols if s not in configured]
    if unknown:
        raise click.UsageError(f"unknown symbol(s) {unknown}; configured: {configured} (TRADELOOP_SYMBOLS)")
    spec = SimulationSpec(start=first, days=days, seed=seed, history=history, symbols=tuple(symbols), warmup_days=warmup_days,
                          retrain_every_days=retrain_every, tune_every_days=tune_every, tune_trials=tune_trials,
                          report_every_days=report_every, autogluon=autogluon)
    try:
        result = run_simulation(spec, out_dir=out_dir)
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"timeline: {result.timeline_file}")
    click.echo(f"tear sheet: {result.tear_sheet}" if result.tear_sheet else "tear sheet: none (reports failed: see the timeline)")
    click.echo(f"database: {result.database}; log: {result.log_file}")
