"""Dagster Definitions, resources, jobs, schedules and sensors, plus the `tradeloop` CLI.

Kept free of imports at package level: the CLI must start fast and must not pay for Dagster.
"""
