"""The vault's columns and tables that migrations 0007 and 0008 added, as SQLAlchemy Core tables:
data-key generations, the retired data keys a rotation still needs, the nodes' acknowledgements, and
the operator keystore.

Core tables, not models in `store/models.py`: only the vault reads and writes them, in bulk
statements on the session's connection (imports, rotation), and no other layer should see them.
"""

from __future__ import annotations

import sqlalchemy as sa

DATA_KEYS = sa.table(
    "datakey",
    sa.column("id", sa.Integer),
    sa.column("product_id", sa.Integer),
    sa.column("wrapped_key", sa.LargeBinary),
    sa.column("master_key_id", sa.String),
    sa.column("generation", sa.Integer),
)
"""One row per product: its current data key (`generation` counts the product's data keys)."""

RETIRED_DATA_KEYS = sa.table(
    "retired_data_key",
    sa.column("id", sa.Integer),
    sa.column("product_id", sa.Integer),
    sa.column("generation", sa.Integer),
    sa.column("wrapped_key", sa.LargeBinary),
    sa.column("master_key_id", sa.String),
)
"""Previous generations of a product's data key, kept (wrapped by the current master key) while a
rotation re-encrypts the card keys they encrypted; deleted once none does."""

CARD_KEYS = sa.table(
    "cardkey",
    sa.column("id", sa.Integer),
    sa.column("product_id", sa.Integer),
    sa.column("batch_id", sa.Integer),
    sa.column("ciphertext", sa.LargeBinary),
    sa.column("fingerprint", sa.String),
    sa.column("key_generation", sa.Integer),
)
"""`key_generation`: the generation of the data key that encrypted the card key (and keyed its
fingerprint)."""

VAULT_NODES = sa.table(
    "vault_node",
    sa.column("node_id", sa.String),
    sa.column("master_key_id", sa.String),
    sa.column("seen_at", sa.DateTime),
)
"""Which master key each running node uses, written every few seconds after it reloads its keys."""

OPERATOR_KEYS = sa.table(
    "operator_key",
    sa.column("id", sa.Integer),
    sa.column("chain_id", sa.Integer),
    sa.column("address", sa.String),
    sa.column("wrapped_key", sa.LargeBinary),
    sa.column("master_key_id", sa.String),
    sa.column("status", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
)
"""Operator keys the shop generated (migration 0008), sealed by the master key; see
`vault/operator_keys.py`."""
