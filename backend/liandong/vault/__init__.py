"""The card-key vault: keys are encrypted at rest and only their commitments go on-chain.

Envelope encryption (`crypto.py`: a master key wraps one data key per product), the vault the rest
of the shop uses (`service.py`), imports, online rotation, and sealing keys to the buyer's browser
(`transport.py`). Nothing outside this package unwraps a data key or writes the vault's tables.
"""
