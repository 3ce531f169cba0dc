"""Alembic environment: run against the connection emolens hands over (never a config URL)."""

from alembic import context

from emolens.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
