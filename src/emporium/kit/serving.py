"""``emporium serve --workers N``: uvicorn's worker processes, each on its own socket.

uvicorn's supervisor binds one socket and hands it to every worker, and a worker woken
by new connections accepts all that are waiting at once. A client opening its
connections together (a load generator, a proxy's pool of keep-alive connections) then
lands them mostly on one worker, and they stay there: the checkout benchmark's 64 split
62/2, 2/62 and 1/63 in three of twelve runs, and one process did nearly all the work.
Here each worker opens its own listening socket on the address with ``SO_REUSEPORT``,
and the kernel spreads new connections over the workers by a hash of their addresses.

A worker's socket goes with it: connections waiting in its queue when it dies are
reset instead of being taken by another worker.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
from types import FrameType
from typing import Any

from uvicorn.config import STARTUP_FAILURE


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_on_sigterm() -> None:
    """Let SIGTERM end the process as Ctrl+C does: through the exit hooks.

    uvicorn stops gracefully on SIGTERM, then raises it again under the handler it found.
    Under the default one the process died there, before the exit hook that stops the
    embedded PostgreSQL with the last process using it.
    """
    signal.signal(signal.SIGTERM, _exit)


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to the address beside the other workers' (called in each worker)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"emporium serve: cannot listen on {_address(host, port)}: {exc}", file=sys.stderr)
        sock.close()
        # uvicorn's supervisor stops, instead of restarting a worker that cannot start.
        sys.exit(STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


def ensure_free(host: str, port: int) -> None:
    """Refuse an address any process listens on, before the workers start.

    Without ``SO_REUSEPORT`` this bind fails whoever holds the port; the workers' own
    binds would succeed beside another ``serve --workers`` on the same port and share its
    traffic.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc}"
            raise SystemExit(f"{_address(host, port)} {reason}") from exc


class WorkerSocket:
    """Stands in uvicorn's socket list for the socket each worker opens for itself.

    The supervisor pickles the list into every worker it starts (and restarts), and
    unpickling this calls :func:`listen_socket` there, so each worker gets its own. That
    runs before the worker's server starts, so it also sets the worker's SIGTERM handler.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return _worker_socket, (self.host, self.port)


def _worker_socket(host: str, port: int) -> socket.socket:
    # Runs in the worker before its uvicorn server takes over the signals.
    exit_on_sigterm()
    return listen_socket(host, port)


def serve_workers(app: str, host: str, port: int, workers: int) -> None:
    """Run ``workers`` uvicorn processes of the app factory ``app`` under uvicorn's supervisor."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    ensure_free(host, port)  # again: the caller's migrations took a while
    config = uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
    )
    sockets: Any = [WorkerSocket(host, port)]
    Multiprocess(config, sockets=sockets).run()
