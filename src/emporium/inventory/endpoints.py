from __future__ import annotations

from fastapi import APIRouter, Request

from emporium.auth.dependencies import CatalogWriter
from emporium.catalog.endpoints import ProductId, invalidate_product
from emporium.catalog.errors import NotProductOwner, ProductNotFound
from emporium.inventory import schemas
from emporium.inventory.errors import StockBelowReserved, WarehouseNotFound
from emporium.inventory.service import inventory as inventory_service
from emporium.kit.db import ReadSessionDep, SessionDep
from emporium.kit.errors import Unauthorized

router = APIRouter(tags=["inventory"])


@router.get("/warehouses", response_model=list[schemas.Warehouse])
async def list_warehouses(session: ReadSessionDep) -> list[schemas.Warehouse]:
    return await inventory_service.warehouses(session)


@router.get(
    "/products/{product_id}/stock",
    response_model=schemas.ProductStock,
    responses=ProductNotFound.responses(),
)
async def get_stock(session: ReadSessionDep, product_id: ProductId) -> schemas.ProductStock:
    return await inventory_service.product_stock(session, product_id)


@router.put(
    "/products/{product_id}/stock",
    response_model=schemas.ProductStock,
    responses={
        **Unauthorized.responses(),
        **NotProductOwner.responses(),
        **ProductNotFound.responses(),
        **WarehouseNotFound.responses(),
        **StockBelowReserved.responses(),
    },
)
async def set_stock(
    request: Request,
    session: SessionDep,
    actor: CatalogWriter,
    product_id: ProductId,
    body: schemas.StockUpdate,
) -> schemas.ProductStock:
    """Set absolute quantities per warehouse, e.g. `[{"warehouse_id": 1, "quantity": 40}]`."""
    result = await inventory_service.set_stock(session, actor, product_id, body)
    invalidate_product(request, product_id)
    return result
