from __future__ import annotations

from pydantic import Field, RootModel, StrictInt, model_validator

from emporium.kit.schemas import Schema


class Warehouse(Schema):
    id: int
    code: str
    name: str


class StockLevel(Schema):
    warehouse_id: int
    warehouse_code: str
    quantity: int
    reserved: int
    available: int


class StockSet(Schema):
    warehouse_id: StrictInt = Field(gt=0, le=2**63 - 1)
    quantity: StrictInt = Field(ge=0, le=1_000_000_000)


class StockUpdate(RootModel[list[StockSet]]):
    root: list[StockSet] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_warehouses(self) -> StockUpdate:
        ids = [s.warehouse_id for s in self.root]
        if len(ids) != len(set(ids)):
            raise ValueError("each warehouse_id may appear only once")
        return self


class ProductStock(Schema):
    product_id: int
    levels: list[StockLevel]
    available: int
