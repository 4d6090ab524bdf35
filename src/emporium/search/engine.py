"""A Tantivy index manager: search, facets, autocomplete and generation switching.

The root directory holds generations ``gen-<n>`` (each a complete Tantivy index plus a
watermark file) and a symlink ``current`` naming the live one. A rebuild writes a new
generation and then replaces the symlink atomically, so readers only ever see a
complete index; every instance checks the symlink on each call and follows a switch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tantivy

from emporium.search import engine_query as eq
from emporium.search.engine_types import (
    EngineResult,
    Facets,
    Hit,
    IndexUnavailable,
    SearchDoc,
    SearchParams,
    Sort,
    Suggestion,
)

__all__ = [
    "EngineResult",
    "Facets",
    "Hit",
    "IndexUnavailable",
    "SearchDoc",
    "SearchIndex",
    "SearchParams",
    "Sort",
    "Suggestion",
]

POINTER = "current"
LOCK_FILE = ".lock"
BUILD_MARK = ".building"
ENGINE_FILE = "engine.json"
WATERMARK_FILE = "watermark.json"
WRITER_HEAP = 64_000_000
BUILD_THREADS = 2
PROGRESS_EVERY = 1000
# How far past the page to look for hits tied on score, to order them by popularity.
TIE_WINDOW = 1000
SUGGEST_MAX_WORDS = 8
_GEN = re.compile(r"gen-(\d+)")


@dataclass(slots=True)
class _Reader:
    name: str
    path: Path
    index: Any
    schema: Any
    meta: tuple[int, int, int]


@contextlib.contextmanager
def _panics_as_errors() -> Iterator[None]:
    # A Rust panic surfaces as a BaseException; make it an ordinary error so the
    # caller's circuit breaker counts it and falls back instead of crashing.
    try:
        yield
    except Exception:
        raise
    except BaseException as exc:
        if type(exc).__name__ == "PanicException":
            raise RuntimeError(f"tantivy panicked: {exc}") from exc
        raise


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            acquired = True
        except BlockingIOError:
            acquired = False
        yield acquired
    finally:
        os.close(fd)  # closing releases the lock


def _meta_signature(path: Path) -> tuple[int, int, int]:
    st = os.stat(path / "meta.json")
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _gen_number(name: str) -> int:
    m = _GEN.fullmatch(name)
    return int(m.group(1)) if m else -1


class SearchIndex:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._reader: _Reader | None = None
        self._writer: Any = None
        self._writer_for: _Reader | None = None

    # -- generations -------------------------------------------------------------

    def _pointer(self) -> str | None:
        link = self.root / POINTER
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        except OSError:
            # Not a symlink: a small file naming the generation is accepted too.
            try:
                target = link.read_text(encoding="utf-8").strip()
            except OSError:
                return None
        name = os.path.basename(target.rstrip("/"))
        return name if _GEN.fullmatch(name) else None

    def _open(self, name: str) -> _Reader:
        path = self.root / name
        try:
            meta = _meta_signature(path)
            info = json.loads((path / ENGINE_FILE).read_text(encoding="utf-8"))
            if info.get("schema_version") != eq.SCHEMA_VERSION:
                raise IndexUnavailable(f"{name} was built with another schema; rebuild it")
            index = tantivy.Index.open(str(path))
            index.config_reader("manual")
            index.searcher()
        except IndexUnavailable:
            raise
        except (OSError, ValueError) as exc:
            raise IndexUnavailable(f"cannot open {name}: {exc}") from exc
        return _Reader(name, path, index, index.schema, meta)

    def _current(self) -> _Reader:
        """The reader of the live generation, reopened or reloaded if it changed."""
        name = self._pointer()
        if name is None:
            raise IndexUnavailable(f"no index generation in {self.root}")
        reader = self._reader
        if reader is None or reader.name != name:
            with self._lock:
                reader = self._reader
                if reader is None or reader.name != name:
                    reader = self._reader = self._open(name)
            return reader
        try:
            meta = _meta_signature(reader.path)
        except OSError as exc:
            raise IndexUnavailable(f"{name} is gone: {exc}") from exc
        if meta != reader.meta:
            # Another process committed to this generation.
            with self._lock:
                if meta != reader.meta:
                    try:
                        reader.index.reload()
                    except ValueError as exc:
                        self._reader = None
                        raise IndexUnavailable(f"cannot reload {name}: {exc}") from exc
                    reader.meta = meta
        return reader

    def in_stock(self, ids: Sequence[int]) -> dict[int, bool]:
        """The indexed in-stock flag of each of these products that is in the index."""
        if not ids:
            return {}
        with _panics_as_errors():
            reader = self._current()
            searcher = reader.index.searcher()
            query = tantivy.Query.term_set_query(reader.schema, "id", list(ids))
            found: dict[int, bool] = {}
            for _, address in searcher.search(query, len(ids), count=False).hits:
                doc = searcher.doc(address)
                found[int(doc.get_first("id"))] = bool(doc.get_first("in_stock"))
            return found

    def exists(self) -> bool:
        try:
            self._current()
        except IndexUnavailable:
            return False
        return True

    def ensure(self) -> None:
        name = self._pointer()
        if name is None or not (self.root / name / "meta.json").exists():
            self.build_generation((), 0)

    def generation(self) -> str:
        name = self._pointer()
        if name is None:
            raise IndexUnavailable(f"no index generation in {self.root}")
        return name

    def doc_count(self) -> int:
        return int(self._current().index.searcher().num_docs)

    def watermark(self) -> int:
        path = self.root / self.generation() / WATERMARK_FILE
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["watermark"])
        except (OSError, ValueError, KeyError, TypeError):
            # A missing or unreadable watermark only means replaying more events.
            return 0

    def set_watermark(self, value: int) -> None:
        _write_json(self.root / self.generation() / WATERMARK_FILE, {"watermark": int(value)})

    def build_generation(
        self,
        docs: Iterable[SearchDoc],
        watermark: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> str:
        """Index ``docs`` (unique ids) into a new generation and make it current."""
        self.root.mkdir(parents=True, exist_ok=True)
        name, path = self._claim()
        # The mark stays locked until the switch so no other build's cleanup takes it.
        with _flock(path / BUILD_MARK):
            try:
                with _panics_as_errors():
                    self._write_generation(path, docs, watermark, on_progress)
                self._switch(name)
            except BaseException:
                if self._pointer() != name:
                    shutil.rmtree(path, ignore_errors=True)
                raise
        return name

    @staticmethod
    def _write_generation(
        path: Path,
        docs: Iterable[SearchDoc],
        watermark: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        index = tantivy.Index(eq.SCHEMA, path=str(path), reuse=False)
        writer = index.writer(WRITER_HEAP, BUILD_THREADS)
        count = 0
        try:
            for doc in docs:
                writer.add_document(eq.to_document(doc))
                count += 1
                if on_progress is not None and count % PROGRESS_EVERY == 0:
                    on_progress(count)
            writer.commit()
            writer.wait_merging_threads()
        except BaseException:
            # Stop the writer's threads before the caller removes its directory.
            del writer, index
            raise
        _write_json(path / ENGINE_FILE, {"schema_version": eq.SCHEMA_VERSION})
        _write_json(path / WATERMARK_FILE, {"watermark": int(watermark)})
        if on_progress is not None:
            on_progress(count)

    def _claim(self) -> tuple[str, Path]:
        numbers = [_gen_number(p.name) for p in self.root.iterdir()]
        n = max(numbers, default=0) + 1
        while True:
            path = self.root / f"gen-{n}"
            try:
                path.mkdir()  # atomic: concurrent builders never share a directory
            except FileExistsError:
                n += 1
                continue
            return path.name, path

    def _switch(self, name: str) -> None:
        with _flock(self.root / LOCK_FILE):
            previous = self._pointer()
            tmp = self.root / f".{POINTER}.{uuid.uuid4().hex}"
            os.symlink(name, tmp)
            os.replace(tmp, self.root / POINTER)
            _fsync_dir(self.root)
            if previous is not None:
                self._remove_older_than(_gen_number(previous), keep=name)

    def _remove_older_than(self, number: int, keep: str) -> None:
        # Best effort: the switch has happened, so a failure here must not undo it.
        for path in self.root.iterdir():
            n = _gen_number(path.name)
            if n < 0 or n >= number or path.name == keep:
                continue
            try:
                with _flock(path / BUILD_MARK, blocking=False) as idle:
                    if not idle:
                        continue  # another build is still writing it
            except OSError:
                continue
            shutil.rmtree(path, ignore_errors=True)

    # -- writing -----------------------------------------------------------------

    def _writing(self) -> tuple[_Reader, Any]:
        """The current reader and a writer on the same generation (hold _write_lock)."""
        reader = self._current()
        if self._writer is None or self._writer_for is not reader:
            # Dropping the old writer releases its directory lock first.
            self._writer = self._writer_for = None
            self._writer = reader.index.writer(WRITER_HEAP, 1)
            self._writer_for = reader
        return reader, self._writer

    def _apply(self, ids: Sequence[int], docs: Sequence[SearchDoc]) -> None:
        with _panics_as_errors(), self._write_lock:
            reader, writer = self._writing()
            try:
                writer.delete_documents_by_query(
                    tantivy.Query.term_set_query(reader.schema, "id", list(ids))
                )
                for doc in docs:
                    writer.add_document(eq.to_document(doc))
                writer.commit()
            except BaseException:
                # Dropping an uncommitted writer discards its pending changes.
                self._writer = self._writer_for = None
                raise
            reader.index.reload()
            reader.meta = _meta_signature(reader.path)

    def upsert(self, docs: Sequence[SearchDoc]) -> None:
        latest = {d.id: d for d in docs}  # the last version of a repeated id wins
        if latest:
            self._apply(list(latest), list(latest.values()))

    def delete(self, ids: Sequence[int]) -> None:
        unique = list(dict.fromkeys(ids))
        if unique:
            self._apply(unique, ())

    def close(self) -> None:
        with self._write_lock:
            self._writer = self._writer_for = None
        with self._lock:
            self._reader = None

    # -- reading -----------------------------------------------------------------

    def search(self, p: SearchParams) -> EngineResult:
        with _panics_as_errors():
            reader = self._current()
            searcher = reader.index.searcher()
            schema = reader.schema
            found = eq.clauses(p.q)
            filters = eq.filter_queries(schema, p)
            text = eq.text_query(schema, found) if found else None
            query = eq.combine(text, filters)
            total, facets = self._facets(searcher, query)
            corrected = False
            if total == 0 and found:
                fuzzy = eq.fuzzy_query(schema, found)
                if fuzzy is not None:
                    retry = eq.combine(fuzzy, filters)
                    retry_total, retry_facets = self._facets(searcher, retry)
                    if retry_total:
                        text, query, total, facets = fuzzy, retry, retry_total, retry_facets
                        corrected = True
            addresses = self._page(searcher, query, p, total, scored=text is not None)
            hits = self._hits(searcher, schema, addresses, text)
            return EngineResult(total=total, hits=hits, facets=facets, corrected=corrected)

    @staticmethod
    def _facets(searcher: Any, query: Any) -> tuple[int, Facets]:
        total, facets, exact = eq.parse_facets(
            searcher.aggregate(query, eq.facet_aggs()), eq.TERMS_PROBE
        )
        if not exact:
            # Ties straddle the probe's cut: count every term instead.
            size = eq.SEGMENT_SIZE
            total, facets, _ = eq.parse_facets(searcher.aggregate(query, eq.facet_aggs(size)), size)
        return total, facets

    @staticmethod
    def _page(searcher: Any, query: Any, p: SearchParams, total: int, *, scored: bool) -> list[Any]:
        # Clamped to the matches: Tantivy allocates for offset + limit up front and
        # panics on a zero limit.
        offset = max(p.offset, 0)
        limit = min(max(p.limit, 0), total - offset)
        if limit <= 0:
            return []
        if p.sort != "relevance" or not scored:
            field, order = eq.SORT_FIELDS[p.sort]
            result = searcher.search(
                query, limit, count=False, order_by_field=field, offset=offset, order=order
            )
            return [address for _, address in result.hits]
        end = offset + limit
        fetch = end + 1
        while True:
            hits = searcher.search(query, fetch, count=False).hits
            if len(hits) < fetch or hits[-1][0] < hits[end - 1][0] or fetch >= end + TIE_WINDOW:
                break
            fetch = min(fetch * 2, end + TIE_WINDOW)
        # Equal scores are ordered by popularity, then id, like the empty query.
        keys = searcher.fast_field_values("k_pop", [a for _, a in hits])
        ranked = sorted(zip(hits, keys, strict=True), key=lambda hk: (-hk[0][0], -(hk[1] or 0)))
        return [hit[1] for hit, _ in ranked[offset:end]]

    @staticmethod
    def _hits(searcher: Any, schema: Any, addresses: list[Any], text: Any | None) -> list[Hit]:
        snippets = None
        if text is not None and addresses:
            snippets = tantivy.SnippetGenerator.create(searcher, text, schema, "title")
            snippets.set_max_num_chars(100_000)
        hits = []
        for address in addresses:
            doc = searcher.doc(address)
            title = str(doc.get_first("title") or "")
            rating = float(doc.get_first("rating") or 0.0)
            hits.append(
                Hit(
                    id=int(doc.get_first("id")),
                    title=title,
                    brand=str(doc.get_first("brand") or ""),
                    category_id=int(doc.get_first("category_id")),
                    price_cents=int(doc.get_first("price_cents")),
                    rating=rating if math.isfinite(rating) else 0.0,
                    in_stock=bool(doc.get_first("in_stock")),
                    highlight=(
                        eq.highlight(snippets.snippet_from_doc(doc), title)
                        if snippets is not None
                        else None
                    ),
                )
            )
        return hits

    def suggest(self, prefix: str, limit: int = 10) -> list[Suggestion]:
        if limit <= 0:
            return []
        found = eq.words(prefix[: eq.MAX_QUERY_CHARS])[:SUGGEST_MAX_WORDS]
        if not found or any(len(w.encode()) > eq.MAX_TERM_BYTES for w in found):
            return []
        with _panics_as_errors():
            reader = self._current()
            searcher = reader.index.searcher()
            brands = eq.brand_suggestions(searcher, reader.schema, found, limit)
            room = limit - min(len(brands), (limit + 1) // 2)
            products = eq.title_suggestions(searcher, reader.schema, found, room)
            return brands[: limit - len(products)] + products
