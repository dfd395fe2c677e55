"""The dashboard's Funds panel: the escrow's books per token, the operator key's gas, the settlement lag.

Read-only, with the statistics' scope: withdrawals and pauses are signed by the owner's wallet in
the browser (`web/static/js/funds.js`), never by the server, which holds no owner key.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

from typing import Annotated

from fastapi import APIRouter, Depends

from liandong.api.deps import MerchantIdentity, Shop, merchant
from liandong.services import funds

router = APIRouter(prefix="/api/merchant/funds", tags=["merchant: funds"])

StatsRead = Annotated[MerchantIdentity, Depends(merchant("stats:read"))]


@router.get("", responses={503: {"description": "The chain cannot be read now."}})
def read_funds(context: Shop, _: StatsRead) -> funds.Funds:
    """Per token, what the escrow holds and owes (escrowed, merchant balance, fees, refund credits)
    as the audit computes them at the chain's head; the operator key's gas against the low-gas
    alert's setting; the deliveries not recorded on-chain yet. Amounts in base units, as strings."""
    return funds.read_funds(context.engine, context.settings, context.domain, context.operator_key)
