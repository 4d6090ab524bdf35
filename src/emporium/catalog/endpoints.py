from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from emporium.auth.dependencies import CatalogWriter
from emporium.catalog import schemas
from emporium.catalog.errors import (
    CategoryNotFound,
    InvalidCursor,
    NotProductOwner,
    ProductNotFound,
    SellerNotFound,
)
from emporium.catalog.service import catalog as catalog_service
from emporium.kit.cache import Cache
from emporium.kit.db import ReadSessionDep, SessionDep, after_commit
from emporium.kit.errors import Unauthorized
from emporium.kit.schemas import CleanStr

router = APIRouter(tags=["catalog"])

ProductId = Annotated[int, Path(gt=0, le=2**63 - 1)]
_AUTH = {**Unauthorized.responses(), **NotProductOwner.responses()}


def product_cache_key(product_id: int) -> str:
    return f"product:{product_id}"


def invalidate_product(request: Request, product_id: int) -> None:
    cache: Cache | None = request.app.state.cache

    async def _drop() -> None:
        if cache is not None:
            await cache.delete(product_cache_key(product_id))

    after_commit(_drop)


@router.get("/categories", response_model=list[schemas.CategoryNode])
async def list_categories(session: ReadSessionDep) -> list[schemas.CategoryNode]:
    """The category tree; each count includes the category's descendants."""
    return await catalog_service.category_tree(session)


@router.get(
    "/products",
    response_model=schemas.ProductPage,
    responses={**CategoryNotFound.responses(), **InvalidCursor.responses()},
)
async def list_products(
    session: ReadSessionDep,
    category: Annotated[
        CleanStr | None,
        Query(max_length=255, description="Category id or slug; includes descendants"),
    ] = None,
    cursor: Annotated[CleanStr | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
) -> schemas.ProductPage:
    return await catalog_service.list_products(
        session, category_key=category, cursor=cursor, limit=limit
    )


@router.get(
    "/products/{product_id}", response_model=schemas.Product, responses=ProductNotFound.responses()
)
async def get_product(request: Request, session: ReadSessionDep, product_id: ProductId) -> object:
    cache: Cache | None = request.app.state.cache
    ttl = request.app.state.settings.product_cache_ttl_seconds
    if cache is not None and ttl:
        cached = await cache.get_json(product_cache_key(product_id))
        if cached is not None:
            return cached
    detail = await catalog_service.get_detail(session, product_id)
    if cache is not None and ttl:
        await cache.set_json(product_cache_key(product_id), detail.model_dump(mode="json"), ttl)
    return detail


@router.post(
    "/products",
    response_model=schemas.Product,
    status_code=status.HTTP_201_CREATED,
    responses={**_AUTH, **CategoryNotFound.responses(), **SellerNotFound.responses()},
)
async def create_product(
    session: SessionDep, actor: CatalogWriter, body: schemas.ProductCreate
) -> schemas.Product:
    return await catalog_service.create(session, actor, body)


@router.patch(
    "/products/{product_id}",
    response_model=schemas.Product,
    responses={**_AUTH, **ProductNotFound.responses(), **CategoryNotFound.responses()},
)
async def update_product(
    request: Request,
    session: SessionDep,
    actor: CatalogWriter,
    product_id: ProductId,
    body: schemas.ProductUpdate,
) -> schemas.Product:
    result = await catalog_service.update(session, actor, product_id, body)
    invalidate_product(request, product_id)
    return result


@router.delete(
    "/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_AUTH, **ProductNotFound.responses()},
)
async def delete_product(
    request: Request, session: SessionDep, actor: CatalogWriter, product_id: ProductId
) -> Response:
    await catalog_service.delete(session, actor, product_id)
    invalidate_product(request, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
