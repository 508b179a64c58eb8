"""The embedded one-machine stack: PostgreSQL, a Kafka-protocol broker, MLflow, Dagster, a Faust worker.

Each service is a real process started detached, with its pid, port and log recorded under
`<home>/run/<name>.json` so that `status` and `down` work from another shell.
"""
