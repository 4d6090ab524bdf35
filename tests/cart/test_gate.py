"""The per-process queue in front of a product's stock rows."""

from __future__ import annotations

import asyncio

from emporium.inventory.gate import ProductGate


async def test_at_most_the_limit_of_one_product_runs_at_once() -> None:
    gate = ProductGate(limit=2)
    inside = {1: 0, 2: 0}
    most = {1: 0, 2: 0}
    order: list[int] = []

    async def reserve(product_id: int, n: int) -> None:
        async with gate.enter(product_id):
            inside[product_id] += 1
            assert gate.inside(product_id) == inside[product_id]
            most[product_id] = max(most[product_id], inside[product_id])
            await asyncio.sleep(0.01)
            order.append(n)
            inside[product_id] -= 1

    await asyncio.gather(*(reserve(1, n) for n in range(10)), *(reserve(2, 100) for _ in range(3)))
    # Another product is not held up by the first one's queue.
    assert most == {1: 2, 2: 2}
    # First come, first served.
    assert [n for n in order if n < 100] == list(range(10))
    assert gate.in_use() == 0
    assert (gate.inside(1), gate.inside(2)) == (0, 0)


async def test_a_failing_caller_leaves_its_place() -> None:
    gate = ProductGate(limit=1)

    async def refused() -> None:
        async with gate.enter(7):
            raise LookupError("insufficient stock")

    results = await asyncio.gather(*(refused() for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [LookupError] * 3
    assert gate.in_use() == 0
    async with gate.enter(7):
        assert gate.in_use() == 1
    assert gate.in_use() == 0
