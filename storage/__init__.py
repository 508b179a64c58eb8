"""The system of record: its schema (``storage.migrations``, Alembic) and every query on it.

One module per subject (market_data, target_weights, stream, ml, marts, ...); each function takes a
SQLAlchemy connection or engine (``storage.db``) and returns domain records or polars frames.  One
driver: psycopg 3 through SQLAlchemy.  storage imports trading (records) and deploy.settings only.
"""
