"""Where a benchmark's CPU went: seconds per group of processes, and the machine's steal.

On a small or shared machine the same run can differ by a third from one minute to the
next; the split tells whether the server, PostgreSQL, the load generator or something
else on the machine (another service, the hypervisor's steal) took the time. Linux only
(/proc); elsewhere it reports nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
GROUPS = ("postgres", "server", "valkey", "load generator", "other")


@dataclass(frozen=True)
class Snapshot:
    cpu: dict[str, tuple[str, float]]  # pid -> (group, CPU seconds so far)
    busy: float  # machine-wide, seconds
    steal: float


def _cmdline(pid: str) -> str:
    try:
        return (PROC / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group(pid: str, comm: str, ppid: str, me: str) -> str:
    if pid == me or comm == "pgbench":
        return "load generator"
    if comm.startswith("postgres"):
        return "postgres"
    if "valkey" in comm:
        return "valkey"
    # uvicorn's worker processes are spawned: their command line names only Python.
    if "emporium" in _cmdline(pid) or "emporium serve" in _cmdline(ppid):
        return "server"
    return "other"


def snapshot() -> Snapshot | None:
    if not (PROC / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    cpu: dict[str, tuple[str, float]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        cpu[entry.name] = (_group(entry.name, comm, fields[1], me), seconds)
    # user nice system idle iowait irq softirq steal; guest time is already in user.
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    values += [0] * (8 - len(values))
    idle, steal = values[3] + values[4], values[7]
    return Snapshot(cpu, (sum(values) - idle - steal) / tick, steal / tick)


def used(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per group between two snapshots."""
    spent: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
    # Per process: one that started during the run counts whole, one that ended is lost.
    for pid, (group, seconds) in after.cpu.items():
        spent[group] += seconds - before.cpu.get(pid, (group, 0.0))[1]
    return spent


def report(before: Snapshot | None, after: Snapshot | None, per: int, unit: str) -> str:
    """CPU milliseconds per ``unit`` by group, and the machine's steal as a share of its time."""
    if before is None or after is None:
        return "  CPU split: not available on this system"
    if per <= 0:
        return f"  CPU split: no {unit} to divide by"
    spent = used(before, after)
    busy = after.busy - before.busy
    steal = after.steal - before.steal
    parts = ", ".join(f"{g} {1000 * spent[g] / per:.1f} ms" for g in GROUPS)
    share = 100 * steal / (busy + steal) if busy + steal > 0 else 0.0
    return f"  CPU per {unit}: {parts}; steal {share:.0f} % of the busy time"


def machine_speed() -> str:
    """How fast this machine runs Python right now, to tell which stretch a figure is from.

    The same loop took 0.18 s on this project's 2-core development machine at its
    fastest and over 1 s at its slowest; benchmark figures move with it.
    """
    start = time.perf_counter()
    i = 0
    while i < 10_000_000:
        i += 1
    return f"  machine: a 10-million-step Python loop took {time.perf_counter() - start:.2f} s"
