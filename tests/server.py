"""Emporium as its own OS process (``emporium serve``), for tests that go over the network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from emporium.config import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(settings: Settings, data_dir: Path, *, workers: int = 1) -> Iterator[str]:
    """Start a server on the test database; yields its base URL. No unhandled errors."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "EMPORIUM_DATABASE_URL": str(settings.database_url),
        "EMPORIUM_VALKEY_URL": str(settings.valkey_url),
        "EMPORIUM_DATA_DIR": str(data_dir),
        "EMPORIUM_LOG_LEVEL": "WARNING",
        "EMPORIUM_DB_POOL_SIZE": "6",
        "EMPORIUM_DB_CHECKOUT_POOL_SIZE": "3",
    }
    command = [sys.executable, "-m", "emporium", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield base
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
        assert "request.unhandled_error" not in stderr
