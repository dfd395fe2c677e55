"""The indexer: follows the escrow's events on the canonical chain into the store.

Four parts, each in its module. `heads`: how new blocks are heard of, one class per way —
`WebsocketHeads` (a `newHeads` subscription that polls over HTTP while it reconnects with backoff)
and `PollingHeads` (HTTP only) — and a slow safety poll that runs even while the socket is up, so
a silent socket cannot hide a block. `sync`: the `Indexer`, which, whatever brought the head, closes
the gap from the checkpoint with `eth_getLogs`: in ranges far from the head, block by block (by
block hash) near it, where each block's parent hash is checked against the stored one to notice a
reorganisation; a range the provider refuses for its size is split, never skipped. `store`:
`IndexerStore`, the only part that writes the database. `transport`: every JSON-RPC call the
indexer makes, retried on throttling (429, `Retry-After`) and failures (5xx, refused connections)
with backoff, and the providers' `eth_getLogs` limit messages in one list.

The checkpoint moves in the same database transaction as the effects of its logs, so a crash at any
point replays at most the blocks whose effects were not committed. Everything is imported from here.
"""

from liandong.chain.indexer.heads import Header, HeadSink, HeadSource, PollingHeads, WebsocketHeads
from liandong.chain.indexer.store import PAYMENT_REORGED, ConfirmationPolicy, ConfirmedOrder, IndexerStore
from liandong.chain.indexer.sync import Indexer, LogSpan
from liandong.chain.indexer.transport import LogsLimitError, RetryPolicy, RpcError, RpcTransport

__all__ = [
    "PAYMENT_REORGED",
    "ConfirmationPolicy",
    "ConfirmedOrder",
    "HeadSink",
    "HeadSource",
    "Header",
    "Indexer",
    "IndexerStore",
    "LogSpan",
    "LogsLimitError",
    "PollingHeads",
    "RetryPolicy",
    "RpcError",
    "RpcTransport",
    "WebsocketHeads",
]
