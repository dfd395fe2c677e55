"""One JSON-RPC call without web3, for the pages and commands that only read a value or two.

The indexer and the sender go through web3; this is for the few places (the order page's chain
view, `status`, the audit command, dev tooling) where one plain request is all that is needed.
"""

from __future__ import annotations

import json
import urllib.request


def rpc_call(url: str, method: str, params: list[object] | None = None, timeout: float = 5.0) -> object:
    """One JSON-RPC call without web3: enough to read a block number or steer a dev node."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        reply = json.load(response)
    if "error" in reply:
        raise RuntimeError(f"{method} failed: {reply['error']}")
    return reply["result"]
