"""The `orchestration` code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg

from orchestration.resources import PostgresResource

defs = dg.Definitions(
    resources={"db": PostgresResource(url=dg.EnvVar("DATABASE_URL"))},
)
