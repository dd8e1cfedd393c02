from alembic import context

from opencues.storage.migrations import declared_objects
from opencues.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic path is supported
    raise RuntimeError("opencues runs migrations programmatically: use `opencues migrate`")

context.configure(
    connection=connection,
    include_object=declared_objects,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
