"""The index's first build at start-up is tried again until it succeeds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from emporium.search.engine import IndexUnavailable, SearchDoc, SearchIndex
from emporium.search.indexer import first_build


async def test_a_failed_first_build_is_tried_again(
    maker: async_sessionmaker[AsyncSession],
    catalog: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = SearchIndex(tmp_path / "index")
    real = SearchIndex.build_generation
    calls: list[int] = []

    def fails_first(
        self: SearchIndex,
        docs: Iterable[SearchDoc],
        watermark: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(self, docs, watermark, on_progress)

    monkeypatch.setattr(SearchIndex, "build_generation", fails_first)
    with capture_logs() as logs:
        generation, total = await first_build(maker, index, first_wait=0.01)
    assert calls == [1, 2]
    failures = [e for e in logs if e["event"] == "search.first_build_failed"]
    assert [(e["attempt"], e["log_level"]) for e in failures] == [(1, "error")]
    assert "No space left on device" in failures[0]["error"]
    assert total == 9
    assert (index.generation(), index.doc_count()) == (generation, 9)


async def test_a_build_that_succeeds_is_run_once(
    maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any], tmp_path: Path
) -> None:
    index = SearchIndex(tmp_path / "index")
    with pytest.raises(IndexUnavailable):
        index.doc_count()
    with capture_logs() as logs:
        generation, total = await first_build(maker, index, first_wait=0.01)
    assert [e for e in logs if e["event"] == "search.first_build_failed"] == []
    assert (index.generation(), index.doc_count(), total) == (generation, 9, 9)
