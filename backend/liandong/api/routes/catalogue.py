"""The merchant's catalogue: products, prices, and key imports with progress.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from liandong.api.deps import MerchantIdentity, RowId, Shop, merchant
from liandong.core.errors import InvalidError, NotFoundError, TooLargeError
from liandong.services import catalogue
from liandong.services.imports import ImportJob, JobState

router = APIRouter(prefix="/api/merchant", tags=["merchant: catalogue"])

MAX_IMPORT_BYTES = 64 * 1024 * 1024
IMPORT_ANSWER_SECONDS = 2.0
"""An import that ends within this time is answered with its result; a longer one with its job."""

ProductsRead = Annotated[MerchantIdentity, Depends(merchant("products:read"))]
ProductsWrite = Annotated[MerchantIdentity, Depends(merchant("products:write"))]
KeysImport = Annotated[MerchantIdentity, Depends(merchant("keys:import"))]


@router.get("/products")
def list_products(context: Shop, _: ProductsRead) -> list[catalogue.MerchantProduct]:
    with context.session() as session:
        return catalogue.merchant_products(session)


@router.post("/products", status_code=201, responses={409: {"description": "SKU taken"}})
def create_product(
    product: catalogue.ProductIn, context: Shop, _: ProductsWrite
) -> catalogue.MerchantProduct:
    with context.session() as session:
        return catalogue.create_product(session, product, context.pricing)


@router.get("/products/{product_id}", responses={404: {}})
def get_product(product_id: RowId, context: Shop, _: ProductsRead) -> catalogue.MerchantProduct:
    with context.session() as session:
        return catalogue.merchant_product(session, product_id)


@router.patch("/products/{product_id}", responses={404: {}, 409: {}})
def edit_product(
    product_id: RowId, patch: catalogue.ProductPatch, context: Shop, _: ProductsWrite
) -> catalogue.MerchantProduct:
    """Edits, lists (`active: true`) or unlists a product; `prices` replaces all its prices."""
    with context.session() as session:
        return catalogue.update_product(session, product_id, patch, context.pricing)


@router.post(
    "/products/{product_id}/keys",
    status_code=202,
    responses={
        201: {"model": ImportJob, "description": "Imported (a small file is answered at once)"},
        404: {},
        413: {"description": "File too large"},
        422: {"description": "Nothing imported: the error names the line"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_keys(
    product_id: RowId,
    request: Request,
    response: Response,
    context: Shop,
    _: KeysImport,
    filename: Annotated[str, Query(min_length=1, max_length=255)] = "upload.txt",
    format: Annotated[Literal["txt", "csv"] | None, Query()] = None,
) -> ImportJob:
    """Imports a TXT (one key per line) or CSV (a `key` column) file, all of it or nothing.

    The body is the file itself. A file that is imported within a couple of seconds is answered
    with its result; a larger one with its job, whose progress `GET /imports/{job}` reports.
    """
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_IMPORT_BYTES:
        raise TooLargeError(f"files up to {MAX_IMPORT_BYTES} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_IMPORT_BYTES:
            raise TooLargeError(f"files up to {MAX_IMPORT_BYTES} bytes")
    with context.session() as session:
        catalogue.merchant_product(session, product_id)
    fmt = format or ("csv" if filename.lower().endswith(".csv") else "txt")
    job = await context.imports.wait(
        context.imports.start(product_id, filename, bytes(data), fmt), IMPORT_ANSWER_SECONDS
    )
    if job.state == JobState.FAILED:
        raise InvalidError(job.error or "nothing imported")
    if job.state == JobState.DONE:
        response.status_code = 201
    return job


@router.get("/imports/{job_id}", responses={404: {}})
def import_progress(job_id: str, context: Shop, _: KeysImport) -> ImportJob:
    job = context.imports.get(job_id)
    if job is None:
        raise NotFoundError("no such import job on this node")
    return job
