"""How tradeloop runs: the settings object, the embedded one-machine stack, the database schema
(Alembic migrations) and the files for running beyond one machine (dagster.yaml, Kubernetes values)."""
