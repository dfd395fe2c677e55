"""The indexer: follows the escrow's events on the canonical chain into the store.

Five parts, each in its module. `heads`: how new blocks are heard of, one class per way —
`WebsocketHeads` (a `newHeads` subscription that polls over HTTP while it reconnects with backoff)
and `PollingHeads` (HTTP only) — and a slow safety poll that runs even while the socket is up, so
a silent socket cannot hide a block. `sync`: the `Indexer`, which, whatever brought the head, closes
the gap from the checkpoint with `eth_getLogs`: in ranges far from the head, block by block (by
block hash) near it, where each block's parent hash is checked against the stored one to notice a
reorganisation; a range the provider refuses for its size is split, never skipped. `store`:
`IndexerStore`, the only part that writes the database; it applies the confirmation policy
(`ConfirmationPolicy`, defined in `liandong.chain.policy`, re-exported here). `providers`:
`ProviderPool`, through which every JSON-RPC call goes to the healthiest of the configured URLs,
failing over on throttling (429, `Retry-After`) and failures (5xx, refused connections, timeouts)
and never asking a provider for a block it does not have yet. `transport`: one request to one
URL, its errors sorted, and the providers' `eth_getLogs` limit messages in one list.

The checkpoint moves in the same database transaction as the effects of its logs, so a crash at any
point replays at most the blocks whose effects were not committed. Everything is imported from here.
"""

from liandong.chain.indexer.heads import Header, HeadSink, HeadSource, PollingHeads, WebsocketHeads
from liandong.chain.indexer.providers import PoolProvider, ProviderPool
from liandong.chain.indexer.store import PAYMENT_REORGED, ConfirmedOrder, IndexerStore
from liandong.chain.indexer.sync import Indexer, LogSpan
from liandong.chain.indexer.transport import LogsLimitError, RetryPolicy, RpcError, RpcTransport
from liandong.chain.policy import ConfirmationPolicy

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
    "PoolProvider",
    "ProviderPool",
    "RetryPolicy",
    "RpcError",
    "RpcTransport",
    "WebsocketHeads",
]
