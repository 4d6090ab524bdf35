"""Concurrent stock writers are serialised by row locks: no lost updates."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import AuditLog, Stock
from tests.fixtures import auth


async def test_concurrent_stock_writes_form_one_serial_history(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid, w1 = catalog["product"]["sony"], catalog["warehouse"]["W1"]
    quantities = list(range(100, 120))

    async def put(q: int) -> int:
        r = await client.put(
            f"/api/v1/products/{pid}/stock",
            json=[{"warehouse_id": w1, "quantity": q}],
            headers=auth("acme"),
        )
        return r.status_code

    assert await asyncio.gather(*(put(q) for q in quantities)) == [200] * len(quantities)
    async with maker() as s:
        audits = (await s.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
        final = await s.scalar(
            select(Stock.quantity).where(Stock.product_id == pid, Stock.warehouse_id == w1)
        )
    history = [(a.old_values, a.new_values) for a in audits]
    assert len(history) == len(quantities)
    # Each write saw the previous one's result: the old value chains to the prior new value.
    previous = 10
    for old, new in history:
        assert old == {"quantity": {str(w1): previous}}
        previous = new["quantity"][str(w1)]  # type: ignore[index]
    assert final == previous
    assert sorted(n["quantity"][str(w1)] for _, n in history) == quantities  # type: ignore[index]
