"""Alembic environment: always driven from :mod:`cityeye.api.migrate` with an open connection.

There is no alembic.ini: the connection (and with it the database URL) comes from the site
configuration, so that one setting, ``api.database_url``, names the database everywhere.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from cityeye.api.store import Base

ADVISORY_LOCK_ID = 0x63697479657965  # "cityeye": one migration at a time across API replicas


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together: the second waits here, then finds the schema current.
            connection.execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_ID})"))
        context.run_migrations()


conn = context.config.attributes.get("connection")
if not isinstance(conn, Connection):
    raise RuntimeError("run migrations with `cityeye db upgrade --config site.yaml`, not the alembic command")
run(conn)
