"""Alembic environment: runs the migrations against the URL that `db.migrate` passes.

No alembic.ini: `store/db.py` builds the configuration in code, so the migrations run from wherever
the shop is installed, against the database its settings name.
"""

from __future__ import annotations

from alembic import context
from liandong.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

config = context.config
url = config.get_main_option("sqlalchemy.url")
connectable = engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=bool(url and url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()
