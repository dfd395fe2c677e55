"""The auditor's view: what the escrow's events and storage say happened, reconciled with the shop's
database.

It reads the chain with its own small JSON-RPC client, not the indexer's, and decodes the logs with
`chain/escrow.py`, the shop's one decoder of the escrow's events (`report.py` says why).
"""
