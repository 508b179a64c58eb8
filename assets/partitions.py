"""The partitions of the assets: by UTC day from the history start, and (market data) by day x symbol.

Nothing is read from the environment at import: the asset modules declare their partitions with the
settings' declared defaults, and the code location re-partitions them from the deployment's settings
when it loads (``for_settings``, called by orchestration/definitions.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from deploy.settings import Settings


def symbol_key(symbol: str) -> str:
    """Partition keys cannot hold '/': BTC/USDT is partition BTC-USDT."""
    return symbol.replace("/", "-")


def key_symbol(key: str) -> str:
    return key.replace("-", "/", 1)


def daily(history_start: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=history_start, timezone="UTC")


def daily_by_symbol(history_start: str, symbols: Sequence[str]) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({
        "date": daily(history_start),
        "symbol": dg.StaticPartitionsDefinition([symbol_key(s) for s in symbols]),
    })


_DEFAULT_START = Settings.model_fields["history_start"].default
_DEFAULT_SYMBOLS = Settings.model_fields["symbols"].default
DAILY = daily(_DEFAULT_START)
DAILY_BY_SYMBOL = daily_by_symbol(_DEFAULT_START, _DEFAULT_SYMBOLS)


def for_settings(assets: Iterable, settings: Settings) -> list:
    """``assets`` with DAILY / DAILY_BY_SYMBOL replaced by the same partitioning from ``settings``."""
    replacement = {DAILY: daily(settings.history_start),
                   DAILY_BY_SYMBOL: daily_by_symbol(settings.history_start, settings.symbols)}

    def repartition(spec: dg.AssetSpec) -> dg.AssetSpec:
        new = replacement.get(spec.partitions_def) if spec.partitions_def is not None else None
        return spec if new is None else spec.replace_attributes(partitions_def=new)

    return [a.map_asset_specs(repartition) if isinstance(a, dg.AssetsDefinition) and a.partitions_def is not None
            else a for a in assets]
