"""The `orchestration` code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg

from assets import market_data, ml, portfolio, reports, tuning, warehouse
from deploy.settings import get_settings
from orchestration.resources import MarketDataSource, PostgresResource

_settings = get_settings()

defs = dg.Definitions(
    assets=[*market_data.ASSETS, *portfolio.ASSETS, *ml.ASSETS, *tuning.ASSETS, *warehouse.ASSETS, *reports.ASSETS],
    asset_checks=[*portfolio.ASSET_CHECKS, *ml.ASSET_CHECKS],
    jobs=[*market_data.JOBS, *portfolio.JOBS, *ml.JOBS, *tuning.JOBS, *warehouse.JOBS, *reports.JOBS],
    schedules=[*market_data.SCHEDULES, *portfolio.SCHEDULES, *ml.SCHEDULES, *reports.SCHEDULES],
    sensors=[*ml.SENSORS],
    resources={
        "db": PostgresResource(url=dg.EnvVar("DATABASE_URL")),
        "market_source": MarketDataSource(kind=_settings.market_source, seed=_settings.sim_seed,
                                          history_start=_settings.history_start),
        **warehouse.RESOURCES,
        **ml.RESOURCES,
    },
)
