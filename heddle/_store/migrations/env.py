"""Alembic environment: runs migrations on the connection Heddle hands it."""

from alembic import context

from heddle._store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("heddle migrations run through heddle._store.migrate, not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
