"""Persistence: the SQLModel tables (`models.py`), the engine and opening the shop's database
(`db.py`), backups, and the Alembic migrations.

The shop's processes open the database through `db.open_shop_database`, so the schema is migrated
and the data folder private before any other code touches them (the audit, which must change
nothing, opens it with `db.make_engine` alone).
"""
