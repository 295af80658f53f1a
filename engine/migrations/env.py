"""Alembic environment: runs on the connection `engine.schema` hands it (never from an ini)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import engine.models  # noqa: F401  (registers every table on SQLModel.metadata)
from engine.db import STARTUP_LOCK

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    if connection.dialect.name == "postgresql":
        # Several management servers may start at once: one migrates, the others wait.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({STARTUP_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Stratus migrations run online only: use `stratus db upgrade`.")
run_migrations_online()
