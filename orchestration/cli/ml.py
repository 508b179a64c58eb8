"""`tradeloop retrain` and `tradeloop model rollback|status|shadow`.

`retrain` runs the retrain job (ml_challenger, ml_promotion and its promotion_gate check) in this process against the
configured DATABASE_URL and MLflow, with a Dagster instance from DAGSTER_HOME when set (so the run shows
in the UI's run list) or an ephemeral one. Launch from the UI (job `retrain`) to run it on the daemon.
"""

from __future__ import annotations

import json
import sys

import click


def _db_url() -> str:
    """DATABASE_URL, or the embedded server's (as `tradeloop migrate`); checked here so that a server that
    is not running is one line, not a traceback from deep inside a command."""
    import sqlalchemy as sa

    from deploy.redaction import scrub
    from deploy.settings import get_settings
    from deploy.stack.pgroles import redacted
    from deploy.stack.process import StackError
    from storage import db

    settings = get_settings()
    try:
        url = settings.database_url_for("batch")  # the embedded server: the batch jobs' role
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with db.engine(url).connect():
            pass
    except sa.exc.OperationalError as exc:
        hint = "" if settings.database_url else " (the embedded one: is the platform up? `tradeloop up`)"
        raise click.ClickException(f"cannot reach PostgreSQL at {redacted(url)}{hint}: "
                                   f"{scrub(str(exc.orig).strip().splitlines()[0])}") from None
    return url


@click.command("retrain")
@click.option("--days", default=7, show_default=True, help="Days of stored features/labels to train on.")
@click.option("--end-date", default="", help="Exclusive end day YYYY-MM-DD (default: after the last stored features).")
def retrain(days: int, end_date: str) -> None:
    """Train a challenger, then the promotion gate decides whether it becomes champion (in process).

    Prints progress and the verdict; library output (warnings, Dagster's event log) goes to
    <log_dir>/cli-retrain.log."""
    from orchestration.cli.quiet import quiet_run

    url = _db_url()
    with quiet_run("retrain") as q:
        import dagster as dg

        from assets.ml import MLResource, ml_challenger, ml_promotion, promotion_gate
        from assets.resources import PostgresResource
        from deploy.settings import get_settings

        # one instance for both steps: the check reads the decision the promotion step recorded
        instance = dg.DagsterInstance.get() if __import__("os").environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
        resources = {"ml": MLResource.from_settings(get_settings()), "db": PostgresResource(url=url)}
        q.say(f"training a challenger on {days} day(s) of stored features (log: {q.log_path})")
        try:
            trained = dg.materialize([ml_challenger], instance=instance, resources=resources,
                                     run_config={"ops": {"ml_challenger": {"config": {"days": days, "end_date": end_date}}}})
            meta = trained.asset_materializations_for_node("ml_challenger")[0].metadata
            q.say(f"challenger v{meta['version'].value} ({meta['model_kind'].value}) registered; "
                  "backtesting it (and the champion) by the stream's trading rule")
            gated = dg.materialize([ml_promotion, promotion_gate], instance=instance, resources=resources)
        except dg.Failure as exc:
            raise click.ClickException(exc.description or str(exc)) from None
    decision = gated.asset_materializations_for_node("ml_promotion")[0].metadata
    click.echo(f"challenger v{meta['version'].value} ({meta['model_kind'].value}); gate "
               f"{'PASSED: promoted to champion' if decision['promoted'].value else 'failed: champion unchanged'}"
               f" ({decision['reason'].value})")


@click.group("model")
def model() -> None:
    """The registered signal model: status, rollback and the shadow (A/B) comparison."""


@model.command("status")
def status() -> None:
    """Champion, challenger and every version with its status."""
    from deploy.settings import get_settings
    from ml.registry import model_status
    from storage import db

    from orchestration.cli.quiet import quiet_run

    s = get_settings()
    url = _db_url()
    with quiet_run("model"):  # MLflow's import-time warnings go to the log, not into the JSON
        out = model_status(db.engine(url), s.tracking_uri, s.model_name)
    json.dump(out, sys.stdout, default=str, indent=2)
    click.echo()


@model.command("rollback")
@click.option("--reason", required=True, help="Why (goes to audit_log).")
def rollback(reason: str) -> None:
    """Give the champion alias back to the previously promoted version."""
    from deploy.settings import get_settings
    from ml.registry import PromotionError, rollback as do_rollback
    from storage import db

    from orchestration.cli.quiet import quiet_run

    s = get_settings()
    url = _db_url()
    try:
        with quiet_run("model"):
            frm, to = do_rollback(db.engine(url), s.tracking_uri, s.model_name, reason)
    except PromotionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{s.model_name}: champion v{frm} -> v{to}")


def paired_test_options(command):
    """The options of the paired shadow test, shared by `model shadow` and `strategy compare`."""
    for option in reversed([
        click.option("--horizon-bars", default=1, show_default=True, type=click.IntRange(1, 1440),
                     help="Forward return horizon in bars (above 1 the returns overlap: p-values optimistic)."),
        click.option("--min-n", default=30, show_default=True, type=click.IntRange(3),
                     help="Fewest paired bars for a verdict."),
        click.option("--alpha", default=0.05, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Significance level of the tests."),
    ]):
        command = option(command)
    return command


@model.command("shadow")
@click.option("--strategy", default="ml_champion", show_default=True, help="Stream slot running ml_signal with shadow on.")
@paired_test_options
def shadow(strategy: str, horizon_bars: int, min_n: int, alpha: float) -> None:
    """Challenger vs champion on the same live bars: paired t-test and Wilcoxon (ml/shadow.py)."""
    print_shadow_comparison(strategy, horizon_bars, min_n, alpha)


def print_shadow_comparison(slot: str, horizon_bars: int, min_n: int, alpha: float) -> None:
    """The shadow rows of SLOT (a challenger model or a candidate release) against its live rows, as JSON."""
    from deploy.settings import get_settings
    from ml.shadow import ShadowError, load_and_compare
    from storage import db

    s = get_settings()
    try:
        out = load_and_compare(db.engine(_db_url()), s.account, slot, s.stream_exchange,
                               horizon_bars=horizon_bars, min_n=min_n, alpha=alpha)
    except ShadowError as exc:
        raise click.ClickException(str(exc)) from None
    json.dump(out, sys.stdout, default=str, indent=2)
    click.echo()
