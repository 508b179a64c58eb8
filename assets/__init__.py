"""Dagster assets and asset checks: thin functions that load, call trading/ and ml/, and store."""
