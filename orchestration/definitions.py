"""The `orchestration` code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg

from assets import market_data
from deploy.settings import get_settings
from orchestration.resources import MarketDataSource, PostgresResource

_settings = get_settings()

defs = dg.Definitions(
    assets=[*market_data.ASSETS],
    jobs=[*market_data.JOBS],
    schedules=[*market_data.SCHEDULES],
    resources={
        "db": PostgresResource(url=dg.EnvVar("DATABASE_URL")),
        "market_source": MarketDataSource(kind=_settings.market_source, seed=_settings.sim_seed,
                                          history_start=_settings.history_start),
    },
)
