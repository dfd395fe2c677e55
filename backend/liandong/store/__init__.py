"""Persistence: the SQLModel tables, the engine and the Alembic migrations."""
