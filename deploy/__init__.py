"""How tradeloop runs: the settings object, the embedded one-machine stack and the files for running
beyond one machine (dagster.yaml, Kubernetes values).  The schema (Alembic migrations) is in storage/."""
