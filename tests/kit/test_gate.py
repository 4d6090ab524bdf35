"""The per-process queue per key (emporium.kit.gate)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from emporium.kit.gate import Gate, Kind, shared_call, shared_failure


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_at_most_the_limit_of_one_product_runs_at_once() -> None:
    gate = Gate(limit=2)
    inside = {1: 0, 2: 0}
    most = {1: 0, 2: 0}
    order: list[int] = []

    async def reserve(product_id: int, n: int) -> None:
        async with gate.enter(product_id):
            inside[product_id] += 1
            # A place is taken when it is handed over, before its caller runs.
            assert inside[product_id] <= gate.inside(product_id) <= 2
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
    gate = Gate(limit=1)

    async def refused() -> None:
        async with gate.enter(7):
            raise LookupError("insufficient stock")

    results = await asyncio.gather(*(refused() for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [LookupError] * 3
    assert gate.in_use() == 0
    async with gate.enter(7):
        assert gate.in_use() == 1
    assert gate.in_use() == 0


async def test_waving_the_queue_through_releases_every_waiter_without_a_place() -> None:
    gate = Gate(limit=1)
    holder_in, holder_out = asyncio.Event(), asyncio.Event()
    turns: list[tuple[int, Kind, int]] = []

    async def holder() -> None:
        async with gate.enter(3) as turn:
            assert turn.kind is Kind.LEAD
            holder_in.set()
            await holder_out.wait()

    async def buyer(n: int) -> None:
        async with gate.enter(3, payload=n) as turn:
            turns.append((n, turn.kind, gate.inside(3)))

    first = asyncio.create_task(holder())
    await holder_in.wait()
    buyers = [asyncio.create_task(buyer(n)) for n in range(3)]
    await until(lambda: gate.waiting(3) == 3)
    assert gate.wave_through(3) == 3
    await asyncio.gather(*buyers)
    # Released while the holder still has the only place, in the order they came.
    assert turns == [(0, Kind.WAVED, 1), (1, Kind.WAVED, 1), (2, Kind.WAVED, 1)]
    assert (gate.waiting(3), gate.inside(3)) == (0, 1)
    holder_out.set()
    await first
    assert gate.in_use() == 0
    assert gate.wave_through(3) == 0
    async with gate.enter(3) as turn:
        assert (turn.kind, gate.inside(3)) == (Kind.LEAD, 1)


async def test_a_waiter_cancelled_in_the_queue_gives_up_its_place() -> None:
    gate = Gate(limit=1)
    order: list[str] = []

    async def caller(name: str, hold: float) -> None:
        async with gate.enter(5):
            order.append(name)
            await asyncio.sleep(hold)

    first = asyncio.create_task(caller("first", 0.02))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(caller("doomed", 0))
    last = asyncio.create_task(caller("last", 0))
    await until(lambda: gate.waiting(5) == 2)
    doomed.cancel()
    await asyncio.wait_for(asyncio.gather(first, last), 5)  # a lost place would hang here
    assert doomed.cancelled()
    assert order == ["first", "last"]
    assert gate.in_use() == 0


async def test_a_waiter_cancelled_as_it_is_let_in_passes_the_place_on() -> None:
    gate = Gate(limit=1)
    order: list[str] = []
    release = asyncio.Event()

    async def caller(name: str) -> None:
        async with gate.enter(6):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(caller("first"))
    await asyncio.sleep(0)
    unlucky = asyncio.create_task(caller("unlucky"))
    last = asyncio.create_task(caller("last"))
    await until(lambda: gate.waiting(6) == 2)
    release.set()
    await until(lambda: gate.waiting(6) == 1)  # the first leaves and lets the next one in ...
    unlucky.cancel()  # ... which is cancelled before it runs
    await asyncio.wait_for(asyncio.gather(first, last), 5)  # a lost place would hang here
    assert unlucky.cancelled()
    assert order == ["first", "last"]
    assert gate.in_use() == 0


async def test_the_caller_let_in_takes_the_queued_callers_along_and_serves_them() -> None:
    gate = Gate(limit=1)
    holder_in, holder_out = asyncio.Event(), asyncio.Event()
    answers: dict[str, object] = {}

    async def holder() -> None:
        async with gate.enter(4):
            holder_in.set()
            await holder_out.wait()

    async def leader() -> None:
        async with gate.enter(4, payload="lead") as turn:
            assert turn.kind is Kind.LEAD
            riders = gate.take_riders(4, 2)
            # The first two queued that carry a payload, in the order they came; the
            # caller with none stays queued, and so does the one past the limit.
            assert [r.payload for r in riders] == ["a", "c"]
            assert gate.waiting(4) == 2
            for rider in riders:
                rider.serve(f"done {rider.payload}")
            answers["lead"] = "own"

    async def caller(name: str | None, label: str) -> None:
        async with gate.enter(4, payload=name) as turn:
            answers[label] = (turn.kind, turn.outcome, gate.inside(4))

    first = asyncio.create_task(holder())
    await holder_in.wait()
    tasks = [asyncio.create_task(leader())]
    await until(lambda: gate.waiting(4) == 1)
    for name, label in (("a", "a"), (None, "plain"), ("c", "c"), ("d", "d")):
        tasks.append(asyncio.create_task(caller(name, label)))
        await until(lambda n=len(tasks): gate.waiting(4) == n)
    holder_out.set()
    await asyncio.wait_for(asyncio.gather(first, *tasks), 5)
    # Served while the leader held the only place; the others took a place in turn.
    assert answers == {
        "lead": "own",
        "a": (Kind.SERVED, "done a", 1),
        "c": (Kind.SERVED, "done c", 1),
        "plain": (Kind.LEAD, None, 1),
        "d": (Kind.LEAD, None, 1),
    }
    assert gate.in_use() == 0


async def test_a_rider_cancelled_before_it_is_served_is_left_out() -> None:
    gate = Gate(limit=1)
    holder_in, holder_out = asyncio.Event(), asyncio.Event()
    taken: list[object] = []

    async def holder() -> None:
        async with gate.enter(8):
            holder_in.set()
            await holder_out.wait()
            riders = gate.take_riders(8, 5)
            taken.extend(r.payload for r in riders)
            for rider in riders:
                rider.serve("done")

    async def caller(name: str) -> object:
        async with gate.enter(8, payload=name) as turn:
            return turn.outcome

    first = asyncio.create_task(holder())
    await holder_in.wait()
    doomed = asyncio.create_task(caller("doomed"))
    kept = asyncio.create_task(caller("kept"))
    await until(lambda: gate.waiting(8) == 2)
    doomed.cancel()
    await until(lambda: gate.waiting(8) == 1)
    holder_out.set()
    assert await asyncio.wait_for(kept, 5) == "done"
    await first
    assert doomed.cancelled()
    assert taken == ["kept"]
    assert gate.in_use() == 0


async def test_riders_share_the_failure_of_the_call_made_for_them() -> None:
    gate = Gate(limit=1)
    holder_in, holder_out = asyncio.Event(), asyncio.Event()

    async def holder(error: BaseException) -> None:
        async with gate.enter(9):
            holder_in.set()
            await holder_out.wait()
            riders = gate.take_riders(9, 5)
            with shared_failure(riders):
                raise error

    async def rider() -> object:
        async with gate.enter(9, payload="r") as turn:
            return turn.outcome

    for error, seen in (
        (LookupError("gone"), LookupError),
        (asyncio.CancelledError(), RuntimeError),
    ):
        holder_in.clear()
        holder_out.clear()
        first = asyncio.create_task(holder(error))
        await holder_in.wait()
        riders = [asyncio.create_task(rider()) for _ in range(2)]
        await until(lambda: gate.waiting(9) == 2)
        holder_out.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*riders), 5)
        assert [type(o) for o in outcomes] == [seen, seen]
        with pytest.raises(type(error)):
            await first
        assert gate.in_use() == 0


async def test_a_call_made_for_riders_serves_them_though_its_caller_is_cancelled() -> None:
    gate = Gate(limit=1)
    started, finish = asyncio.Event(), asyncio.Event()
    made: list[list[str]] = []

    async def call(payloads: list[str]) -> list[str]:
        made.append(payloads)
        started.set()
        await finish.wait()
        return [f"done {p}" for p in payloads]

    holder_in, holder_out = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with gate.enter("k"):
            holder_in.set()
            await holder_out.wait()

    first = asyncio.create_task(holder())
    await holder_in.wait()
    callers = [asyncio.create_task(shared_call(gate, "k", p, call, 5)) for p in "abc"]
    await until(lambda: gate.waiting("k") == 3)
    holder_out.set()
    await first
    await asyncio.wait_for(started.wait(), 5)
    callers[0].cancel()  # the caller that made the call for all three
    finish.set()

    with pytest.raises(asyncio.CancelledError):
        await callers[0]
    assert await asyncio.wait_for(asyncio.gather(*callers[1:]), 5) == ["done b", "done c"]
    assert made == [["a", "b", "c"]]
    assert gate.in_use() == 0
