"""Alembic environment: online migrations only, URL from the config set by storage.migrations."""

import sqlalchemy as sa
from alembic import context

config = context.config

engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
