"""`tradeloop simulate`: what this platform would have done, on its own, over past days.

The stream's Trader, the daily Dagster jobs and the decay sensor run in one process on an accelerated
clock (runner.py) against a database and an MLflow store of the simulation's own (environment.py); the
decisions become a timeline (timeline.py) and the platform's tear sheets are written at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from orchestration.simulation.environment import SimulationError
from orchestration.simulation.runner import SimulationSpec
from orchestration.simulation.timeline import Timeline

__all__ = ["SimulationError", "SimulationResult", "SimulationSpec", "run_simulation", "default_out_dir"]


@dataclass
class SimulationResult:
    timeline: Timeline
    out_dir: Path
    timeline_file: Path
    tear_sheet: Path | None
    database: str
    log_file: Path


def default_out_dir(home: Path, spec: SimulationSpec) -> Path:
    return home / "simulations" / f"{spec.start}_{spec.days}d_seed{spec.seed}"


def run_simulation(spec: SimulationSpec, *, out_dir: Path | None = None, log_file: Path | None = None,
                   show_timeline: bool = True, show_progress: bool = True) -> SimulationResult:
    """Run ``spec``; its state lives in ``out_dir`` (replaced) and database ``tradeloop_sim_<seed>``
    (re-created). The terminal gets progress lines (``... ``) and the timeline as it happens; everything
    else goes to the log file."""
    from deploy.settings import get_settings
    from orchestration.simulation import environment as env
    from orchestration.simulation.runner import Simulation

    # OpenMP threads that spin while they wait (libgomp's default) make a 2-thread LightGBM fit ten times
    # slower on a busy machine; waiting threads that sleep cost nothing when the machine is idle
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = get_settings()
    spec.check(datetime.now(timezone.utc).date())
    symbols = list(spec.symbols or settings.symbols)
    exchange, history_url = "sim", ""
    if spec.history == "stored":  # the platform's own bars: checked before anything is created
        exchange = "sim" if settings.market_source == "sim" else settings.market_source
        history_url = env.platform_database(settings)
        env.check_stored_history(history_url, exchange, symbols, spec.first_history_day,
                                 spec.start + timedelta(days=spec.days - 1))
    out = env.reset_dir(out_dir or default_out_dir(settings.home, spec))
    log = log_file or settings.log_dir / f"simulate-seed{spec.seed}.log"
    # the sim market is the deployment's (anchored at its history start) when the simulated history lies
    # inside it; earlier days anchor it at the simulation's first history day
    anchor = min(date.fromisoformat(settings.history_start), spec.first_history_day).isoformat()
    with env.output_to_log(log) as terminal:
        def say(line: str) -> None:
            terminal.write(line + "\n")

        def progress(line: str) -> None:
            if show_progress:
                say(f"... {line}")

        timeline = Timeline(echo=say if show_timeline else None)
        market = (f"stored history of {exchange} ({history_url.split('@')[-1]})" if history_url
                  else f"sim market seed {spec.seed}")
        progress(f"simulation {spec.start} + {spec.days} days, {market}, symbols {', '.join(symbols)}; "
                 f"library output in {log}")
        server = env.open_server(settings, out)
        url = ""
        try:
            name = env.database_name(spec.seed)
            url = env.fresh_database(server, name)
            tracking = env.mlflow_store(out)
            progress(f"database {name} (fresh), MLflow store {out / 'mlflow.db'}")
            overrides = env.overrides(home=out / "home", database_url=url, tracking_uri=tracking,
                                      model_name=f"tradeloop-sim-{spec.seed}", symbols=symbols, seed=spec.seed,
                                      history_start=anchor, exchange=exchange)
            with env.simulation_settings(overrides) as sim_settings:
                sim = Simulation(spec, sim_settings, timeline, progress, history_url=history_url)
                sim.run()
        finally:
            from storage import db

            if url:  # the process's shared pool holds connections to the simulation's database
                db.engine(url).dispose()
            if server.stop is not None:
                server.stop()
    timeline_file = out / "timeline.txt"
    timeline_file.write_text("\n".join(timeline.lines()) + "\n")
    return SimulationResult(timeline, out, timeline_file, sim.tear_sheet, name, log)
