"""`tradeloop stream SOURCE ...`: run a market-data producer into the broker's market.ticks topic.

The producers and their options live in streaming/producers.py (sim in real time, replay of
market_data_clean, ccxt WebSocket trades); this command hands its arguments over unchanged, so
`tradeloop stream --help` is the producers' own help. `tradeloop up` already runs the sim feed.
"""

from __future__ import annotations

import sys

import click


@click.command("stream", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def stream(args: tuple[str, ...]) -> None:
    """Publish ticks: `sim`, `replay` (market_data_clean) or `ccxt --exchange ID` (see --help)."""
    from streaming.producers import main

    sys.exit(main(list(args), prog="tradeloop stream"))
