"""The embedded PostgreSQL's list of processes using it survives a process killed mid-write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from emporium.kit.embedded import _prune_dead_handles


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
