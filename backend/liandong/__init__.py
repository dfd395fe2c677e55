"""链动小铺 Liandong: a self-hosted card-key shop paid through an on-chain escrow.

Buyers pay a signed quote into the escrow; the shop delivers the keys and records a commitment to
them on-chain, or the escrow refunds. The packages are layers (cli > runtime > api > services,
audit > delivery > chain, vault > store > core): see the import-linter contract in pyproject.toml.
"""

__version__ = "0.1.0"
