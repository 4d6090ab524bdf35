"""Search engine index: writes, generations, watermark, unavailability, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from emporium.search.engine import IndexUnavailable, SearchDoc, SearchIndex, SearchParams
from tests.search.engine_helpers import (
    ALL,
    CATALOG,
    ids,
    index_fixture,  # noqa: F401  (the "index" fixture)
    search,
)

# -- writing ---------------------------------------------------------------------


def test_upsert_replaces_by_id(index: SearchIndex) -> None:
    renamed = replace(CATALOG[0], title="Sony WH-1000XM6 Headphones", price_cents=39999)
    index.upsert([renamed])
    index.upsert([renamed])
    assert index.doc_count() == ALL
    assert ids(search(index, q="1000xm6")) == [1]
    # Only the typo-tolerant retry still finds it under its old model number.
    old = search(index, q="1000xm5")
    assert (ids(old), old.corrected) == ([1], True)
    [hit] = search(index, brands=("Sony",)).hits
    assert (hit.title, hit.price_cents) == ("Sony WH-1000XM6 Headphones", 39999)


def test_upsert_batch_keeps_last_version_and_adds_new(index: SearchIndex) -> None:
    first = replace(CATALOG[0], id=20, title="Draft lamp")
    last = replace(CATALOG[0], id=20, title="Final lamp")
    index.upsert([first, last, replace(CATALOG[1], id=21, title="Other lamp")])
    assert index.doc_count() == ALL + 2
    assert [h.title for h in search(index, q="lamp", sort="price_asc").hits] == [
        "Other lamp",
        "Final lamp",
    ]
    assert search(index, q="draft").total == 0


def test_delete(index: SearchIndex) -> None:
    index.delete([1, 999])
    assert index.doc_count() == ALL - 1
    assert search(index, brands=("Sony",)).total == 0
    index.delete([])
    index.upsert([])
    assert index.doc_count() == ALL - 1


def test_writes_are_seen_by_other_instances(index: SearchIndex) -> None:
    other = SearchIndex(index.root)
    assert other.doc_count() == ALL
    index.upsert([replace(CATALOG[0], id=30, title="Fresh lamp")])
    assert ids(search(other, q="lamp")) == [30]
    index.delete([30])
    assert search(other, q="lamp").total == 0
    other.close()


def test_concurrent_searches_while_writing(index: SearchIndex) -> None:
    errors: list[BaseException] = []
    totals: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                totals.append(search(index, q="lamp").total)
                index.suggest("lam")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        index.upsert([replace(CATALOG[0], id=100 + i, title=f"Lamp {i}")])
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert totals
    assert all(0 <= n <= 20 for n in totals)
    assert search(index, q="lamp").total == 20


# -- generations -------------------------------------------------------------------


def gen_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("gen-"))


def test_build_generation_switch_is_seen_by_other_instances(tmp_path: Path) -> None:
    root = tmp_path / "index"
    builder, reader = SearchIndex(root), SearchIndex(root)
    assert builder.build_generation(CATALOG, watermark=5) == "gen-1"
    assert (reader.generation(), reader.doc_count(), reader.watermark()) == ("gen-1", ALL, 5)
    assert (root / "current").is_symlink()

    new = [replace(d, title=d.title + " lamp") for d in CATALOG[:3]]
    assert builder.build_generation(new, watermark=9) == "gen-2"
    assert (reader.generation(), reader.watermark()) == ("gen-2", 9)
    assert ids(search(reader, q="lamp", sort="price_asc")) == [3, 2, 1]
    assert search(reader).total == 3

    builder.build_generation(CATALOG[:1], watermark=10)
    builder.build_generation(CATALOG[:2], watermark=11)
    # Only the live generation and the one before it are kept.
    assert gen_dirs(root) == ["gen-3", "gen-4"]
    assert search(reader).total == 2
    builder.close()
    reader.close()


def test_search_during_build_sees_the_old_generation(index: SearchIndex) -> None:
    reader = SearchIndex(index.root)
    assert search(reader).total == ALL
    seen: list[tuple[str, int, int]] = []

    def docs() -> Iterator[SearchDoc]:
        for i in range(1, 2501):
            if i in (1, 1500, 2500):
                seen.append(
                    (reader.generation(), search(reader).total, search(reader, q="lamp").total)
                )
            yield replace(CATALOG[0], id=1000 + i, title=f"Desk lamp {i}")

    progress: list[int] = []
    name = index.build_generation(docs(), watermark=3, on_progress=progress.append)
    assert seen == [("gen-1", ALL, 0)] * 3
    assert progress == [1000, 2000, 2500]
    assert (name, reader.generation()) == ("gen-2", "gen-2")
    assert search(reader).total == 2500
    assert search(reader, q="lamp").total == 2500
    reader.close()


def test_concurrent_searches_during_build_see_whole_generations(index: SearchIndex) -> None:
    reader = SearchIndex(index.root)
    totals: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                totals.append(search(reader, limit=1).total)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        index.build_generation((replace(CATALOG[0], id=i) for i in range(1, 5001)), watermark=1)
        for _ in range(50):
            if totals and totals[-1] == 5000:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(totals) <= {ALL, 5000}
    assert totals[0] == ALL
    assert totals[-1] == 5000


def test_writer_follows_a_switch_made_elsewhere(index: SearchIndex) -> None:
    other = SearchIndex(index.root)
    index.upsert([replace(CATALOG[0], id=40, title="Before lamp")])
    other.build_generation(CATALOG[:2], watermark=0)
    index.upsert([replace(CATALOG[0], id=41, title="After lamp")])
    assert index.generation() == "gen-2"
    assert ids(search(other, q="lamp")) == [41]
    assert index.doc_count() == 3
    other.close()


def test_failed_build_keeps_the_current_generation(index: SearchIndex) -> None:
    def docs() -> Iterator[SearchDoc]:
        yield CATALOG[0]
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        index.build_generation(docs(), watermark=1)
    assert index.generation() == "gen-1"
    assert gen_dirs(index.root) == ["gen-1"]
    assert search(index).total == ALL
    assert index.build_generation(CATALOG[:1], watermark=2) == "gen-2"


def test_watermark_roundtrip(index: SearchIndex) -> None:
    assert index.watermark() == 0
    index.set_watermark(42)
    assert index.watermark() == 42
    assert SearchIndex(index.root).watermark() == 42
    index.set_watermark(43)
    assert index.watermark() == 43
    current = index.root / index.generation()
    assert not [p.name for p in current.iterdir() if p.name.startswith(".watermark")]
    index.build_generation([], watermark=7)
    assert index.watermark() == 7


def test_missing_index_is_unavailable(tmp_path: Path) -> None:
    ix = SearchIndex(tmp_path / "nothing")
    assert ix.exists() is False
    with pytest.raises(IndexUnavailable):
        ix.search(SearchParams(q="x"))
    with pytest.raises(IndexUnavailable):
        ix.suggest("abc")
    with pytest.raises(IndexUnavailable):
        ix.upsert(CATALOG[:1])
    with pytest.raises(IndexUnavailable):
        ix.delete([1])
    with pytest.raises(IndexUnavailable):
        ix.doc_count()
    with pytest.raises(IndexUnavailable):
        ix.generation()
    ix.ensure()
    assert ix.exists() is True
    assert (ix.generation(), ix.doc_count(), ix.watermark()) == ("gen-1", 0, 0)
    assert search(ix, q="anything").total == 0
    ix.ensure()
    assert ix.generation() == "gen-1"
    ix.upsert(CATALOG[:2])
    assert ix.doc_count() == 2
    ix.close()


def test_corrupt_generation_is_unavailable(index: SearchIndex) -> None:
    assert index.exists()
    (index.root / index.generation() / "meta.json").write_text("garbage{")
    with pytest.raises(IndexUnavailable):
        SearchIndex(index.root).search(SearchParams())
    # An instance that had it open notices too.
    with pytest.raises(IndexUnavailable):
        index.search(SearchParams())
    with pytest.raises(IndexUnavailable):
        index.upsert(CATALOG[:1])
    assert index.exists() is False
    index.build_generation(CATALOG, watermark=0)
    assert search(index).total == ALL


def test_removed_root_is_unavailable(index: SearchIndex) -> None:
    import shutil

    assert search(index).total == ALL
    shutil.rmtree(index.root)
    with pytest.raises(IndexUnavailable):
        index.search(SearchParams())
    assert index.exists() is False
