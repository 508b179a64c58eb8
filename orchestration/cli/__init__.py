"""`tradeloop` command line.

Sub-commands live in their own modules and are imported only when invoked, so that
`tradeloop --help` or `tradeloop status` never pays for Dagster, MLflow or AutoGluon imports.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "up": "orchestration.cli.stack:up",
    "down": "orchestration.cli.stack:down",
    "status": "orchestration.cli.stack:status",
    "migrate": "orchestration.cli.stack:migrate",
    "backtest": "orchestration.cli.backtest:backtest",
    "backfill": "orchestration.cli.backfill:backfill",
    "kill-switch": "orchestration.cli.control:kill_switch",
    "resume": "orchestration.cli.control:resume",
    "risk": "orchestration.cli.control:risk",
    "retrain": "orchestration.cli.ml:retrain",
    "model": "orchestration.cli.ml:model",
    "stream": "orchestration.cli.stream:stream",
    "strategy": "orchestration.cli.strategy:strategy",
    "simulate": "orchestration.cli.simulate:simulate",
    "recon": "orchestration.cli.recon:recon",
    "keys": "orchestration.cli.keys:keys",
    "certs": "orchestration.cli.certs:certs",
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context):
        # a bad setting is a user mistake: one line per problem naming the variable, no traceback
        from pydantic import ValidationError

        from deploy.redaction import install

        install()  # no credential in any log line or traceback of a command
        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            from deploy.settings import error_lines

            for line in error_lines(exc):
                click.echo(line, err=True)
            ctx.exit(2)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """tradeloop: autonomous trading platform (paper trading by default)."""
