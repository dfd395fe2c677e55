"""The dashboard's Funds panel: the escrow's books per token, the operator key's gas, the settlement lag.

Read-only, with the statistics' scope: withdrawals and pauses are signed by the owner's wallet in
the browser (`web/static/js/funds.js`), never by the server, which holds no owner key.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from liandong.api.deps import MerchantIdentity, Shop, merchant
from liandong.core.errors import NotFoundError
from liandong.services import funds

router = APIRouter(prefix="/api/merchant/funds", tags=["merchant: funds"])

StatsRead = Annotated[MerchantIdentity, Depends(merchant("stats:read"))]


@router.get(
    "",
    responses={404: {"description": "No such chain."}, 503: {"description": "The chain cannot be read now."}},
)
def read_funds(
    context: Shop,
    _: StatsRead,
    chain_id: Annotated[int | None, Query(description="The chain (default: the shop's first).")] = None,
) -> funds.Funds:
    """Per token, what one chain's escrow holds and owes (escrowed, merchant balance, fees, refund
    credits) as the audit computes them at the chain's head; the operator key's gas against the
    low-gas alert's setting; the deliveries not recorded on-chain yet. Amounts in base units, as
    strings."""
    chain = context.chains.get(context.default_chain if chain_id is None else chain_id)
    if chain is None:
        raise NotFoundError(f"the shop takes no payments on chain {chain_id}")
    return funds.read_funds(context.engine, context.settings, chain.rpc_url, chain.domain, chain.operator_key)
