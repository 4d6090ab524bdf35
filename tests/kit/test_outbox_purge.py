"""Delivered outbox events past the retention are deleted; pending and recent ones stay."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.kit.outbox import OutboxPurger

# (aggregate id, age in hours, delivered)
EVENTS = [
    ("old-1", 200, True),
    ("old-pending", 190, False),
    ("old-2", 180, True),
    ("recent", 2, True),
    ("recent-pending", 1, False),
    ("old-written-late", 170, True),  # an early transaction that wrote after later ones
]


async def _events(maker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with maker() as s:
        rows = await s.execute(
            text("SELECT aggregate_id FROM outbox WHERE topic = 'test.purge' ORDER BY id")
        )
        return [r.aggregate_id for r in rows]


async def test_the_purger_deletes_delivered_events_past_the_retention_only(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as s, s.begin():
        for aggregate, hours, delivered in EVENTS:
            await s.execute(
                text(
                    "INSERT INTO outbox (topic, aggregate_type, aggregate_id, created_at,"
                    " processed_at) VALUES ('test.purge', 'test', :a,"
                    " now() - make_interval(hours => :h),"
                    " CASE WHEN :d THEN now() - make_interval(hours => :h) END)"
                ),
                {"a": aggregate, "h": hours, "d": delivered},
            )
    before = REGISTRY.get_sample_value("emporium_outbox_events_purged_total") or 0
    purger = OutboxPurger(maker, retention=timedelta(hours=168), batch=1)

    # Batches of one: every delivered event older than a week goes, however many batches.
    assert await purger.run_once() == 2
    assert await _events(maker) == ["old-pending", "recent", "recent-pending", "old-written-late"]
    assert REGISTRY.get_sample_value("emporium_outbox_events_purged_total") == before + 2

    # The old event written after a recent one is left for now: the delete stops at the
    # first event inside the retention. Nothing else changes either.
    assert await purger.run_once() == 0
    assert await _events(maker) == ["old-pending", "recent", "recent-pending", "old-written-late"]

    # Once every event before it is past the retention too, it goes; pending ones stay.
    shorter = OutboxPurger(maker, retention=timedelta(minutes=30), batch=100)
    assert await shorter.run_once() == 2
    assert await _events(maker) == ["old-pending", "recent-pending"]
