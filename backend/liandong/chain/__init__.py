"""Everything that speaks the escrow's language: its quotes (EIP-712), events and calls, the
deployment record, the settlement sender, the indexer, the owner's transactions and the check of
a deployed escrow against its sources.

It knows the contract and the store, nothing of the API or the delivery channels; the local dev
chain lives in `liandong.devtools`, which production code never imports.
"""
