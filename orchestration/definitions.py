"""The `orchestration` code location: the assets and asset checks Dagster finds in the `assets` package (no
hand-kept lists), the jobs, schedules and sensors of orchestration/automation.py, and the resources built
from the settings.

`@dg.definitions` makes the location lazy: the settings are read when Dagster loads the location, not when
this module is imported.
"""

from __future__ import annotations

import dagster as dg

import assets
from assets import partitions
from assets.ml import MLResource
from assets.resources import MarketDataSource, PostgresResource
from assets.warehouse import dbt_resource
from deploy.settings import Settings, get_settings
from orchestration import automation


def resources(settings: Settings) -> dict:
    """The resources every asset, check and sensor of the location asks for, by key."""
    return {
        "db": PostgresResource(url=dg.EnvVar("DATABASE_URL")),
        "market_source": MarketDataSource(kind=settings.market_source, seed=settings.sim_seed,
                                          history_start=settings.history_start, structure=settings.sim_structure),
        "dbt": dbt_resource(),
        "ml": MLResource.from_settings(settings),
    }


@dg.definitions
def defs() -> dg.Definitions:
    return build(get_settings())


def build(settings: Settings) -> dg.Definitions:
    """The location's definitions for these settings."""
    return dg.Definitions(
        # partitioned by the deployment's history start and symbols (assets/partitions.py)
        assets=partitions.for_settings(dg.load_assets_from_package_module(assets), settings),
        asset_checks=dg.load_asset_checks_from_package_module(assets),
        jobs=automation.JOBS,
        schedules=automation.schedules(settings),
        sensors=automation.sensors(settings),
        resources=resources(settings),
        # each run's steps one after another in the run's own process: a step process per asset costs an
        # interpreter and the location's imports (15-30 s each on 2 cores) for no parallelism worth having
        # with two runs at a time (deploy/dagster.yaml)
        executor=dg.in_process_executor,
    )
