"""Alembic environment: the engine comes from schema.migrate (never from a .ini or the env)."""

from alembic import context

import schema

config = context.config
target_metadata = schema.Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER constraints
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
