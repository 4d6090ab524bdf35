"""`emporium serve --workers N`: several processes, each on its own socket, one set of metrics."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from emporium.config import Settings
from tests.server import _free_port, serve

HEALTH = 'emporium_http_requests_total{method="GET",route="/api/health",status="200"}'


@pytest.fixture
def two_workers(settings: Settings, catalog: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    with serve(settings, tmp_path / "data", workers=2) as base:
        yield base


def _health_count(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(HEALTH)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_the_requests_of_every_worker(two_workers: str) -> None:
    before = _health_count(two_workers)

    def hit(_: int) -> int:
        # A new connection each time, so the kernel spreads them over both processes.
        with httpx.Client() as client:
            return client.get(f"{two_workers}/api/health", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(hit, range(200)))
    assert statuses == [200] * 200
    # Whichever process answers /metrics, it reports the sum over both.
    assert [_health_count(two_workers) - before for _ in range(6)] == [200.0] * 6


def _on(c: Any, port: int, status: str) -> bool:
    return c.status == status and getattr(c.laddr, "port", None) == port


def _listeners(port: int) -> list[tuple[int, int]]:
    """(pid, socket inode) of every socket listening on ``port``."""
    found = []
    for c in psutil.net_connections(kind="tcp"):
        if _on(c, port, psutil.CONN_LISTEN) and c.pid is not None:
            found.append((c.pid, os.stat(f"/proc/{c.pid}/fd/{c.fd}").st_ino))
    return sorted(found)


def _both_listening(base: str) -> tuple[int, list[tuple[int, int]]]:
    """The port and its listeners once both workers listen (one may still be starting
    when the other first answers)."""
    port = urlsplit(base).port
    assert port is not None
    for _ in range(600):
        listeners = _listeners(port)
        if len(listeners) == 2:
            break
        time.sleep(0.1)
    return port, listeners


def test_each_worker_listens_on_its_own_socket(two_workers: str) -> None:
    _, listeners = _both_listening(two_workers)
    # Two workers, two sockets: none shared, none left in the supervisor.
    assert len(listeners) == 2
    assert len({pid for pid, _ in listeners}) == 2
    assert len({inode for _, inode in listeners}) == 2


def test_connections_opened_together_spread_over_the_workers(two_workers: str) -> None:
    port, listeners = _both_listening(two_workers)
    workers = [pid for pid, _ in listeners]
    assert len(workers) == 2
    clients = [httpx.Client(base_url=two_workers) for _ in range(64)]
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            statuses = list(
                pool.map(lambda c: c.get("/api/health", timeout=10).status_code, clients)
            )
        assert statuses == [200] * 64
        held = {
            pid: sum(
                1
                for c in psutil.Process(pid).net_connections(kind="tcp")
                if _on(c, port, psutil.CONN_ESTABLISHED)
            )
            for pid in workers
        }
    finally:
        for client in clients:
            client.close()
    assert sum(held.values()) == 64
    # The kernel picks a worker by a hash of each connection's addresses: a split worse
    # than 16/48 has odds of about 1 in 15,000.
    assert min(held.values()) >= 16, held


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_refuses_a_port_in_use_before_starting_anything(tmp_path: Path, workers: int) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("EMPORIUM_", "PROMETHEUS_"))
            },
            "EMPORIUM_DATA_DIR": str(data),
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "emporium",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1] == f"127.0.0.1:{port} is in use"
        # The port's owner still gets its connections, and nothing was started: no data
        # directory, so no database.
        taken.settimeout(5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            accepted, _ = taken.accept()
            assert accepted.getpeername() == client.getsockname()
            accepted.close()
    assert not data.exists()


def _postmaster(pg_dir: Path) -> int | None:
    try:
        return int((pg_dir / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not start")


def test_sigterm_stops_the_embedded_database_with_the_last_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EMPORIUM_", "PROMETHEUS_"))},
        "EMPORIUM_DATA_DIR": str(data),
        "EMPORIUM_LOG_LEVEL": "WARNING",
    }
    database: psutil.Process | None = None
    try:
        for workers in (1, 2):
            port = _free_port()
            command = [sys.executable, "-m", "emporium", "serve", "--port", str(port)]
            proc = subprocess.Popen(
                [*command, "--workers", str(workers)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_ready(f"http://127.0.0.1:{port}")
                database = psutil.Process(_postmaster(data / "pg"))
                children = psutil.Process(proc.pid).children(recursive=True)
                proc.terminate()
                assert proc.wait(timeout=30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
            # The workers and the database went with the server.
            assert psutil.wait_procs([*children, database], timeout=10)[1] == []
            assert _postmaster(data / "pg") is None
            assert (data / "pg" / ".handle_pids.json").read_text() == "[]"
    finally:
        if database is not None and database.is_running():
            database.send_signal(signal.SIGINT)  # a failed run must not leave it behind
