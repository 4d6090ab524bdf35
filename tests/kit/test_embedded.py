"""Embedded servers: the default when no URL is configured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil
import pytest
import valkey
from httpx import ASGITransport, AsyncClient

from emporium.config import Settings
from emporium.kit.embedded import start_embedded_postgres, start_embedded_valkey
from emporium.main import create_app

JOIN = (
    "import sys, warnings; warnings.simplefilter('ignore');"
    "from pathlib import Path;"
    "from emporium.kit.embedded import start_embedded_postgres as s;"
    "print(s(Path(sys.argv[1])).get_pid())"
)


def test_processes_share_one_embedded_postgres(tmp_path: Path) -> None:
    server = start_embedded_postgres(tmp_path / "pg")
    pid = server.get_pid()
    out = subprocess.run(
        [sys.executable, "-c", JOIN, str(tmp_path / "pg")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout.strip()) == pid  # joined, not started a second server
    # The other process has exited; this one still holds the server, so it keeps running.
    assert server.get_postmaster_info().is_running()
    assert "1" in server.psql("SELECT 1;")
    process = server.get_postmaster_info().process
    server.cleanup()
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_a_dead_process_does_not_keep_the_server_running(tmp_path: Path) -> None:
    pg_dir = tmp_path / "pg"
    crashed = subprocess.run(
        [sys.executable, "-c", JOIN + "; import os; os._exit(0)", str(pg_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(crashed.stdout.strip())  # the server's pid; its client died without cleanup
    server = start_embedded_postgres(pg_dir)
    assert server.get_pid() == dead_pid
    process = server.get_postmaster_info().process
    server.cleanup()  # the only live handle: the server stops
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


VALKEY = (
    "import sys, warnings; warnings.simplefilter('ignore');"
    "from pathlib import Path;"
    "from emporium.kit.embedded import start_embedded_valkey as s;"
    "v = s(Path(sys.argv[1])); print('HOLD', v.url, v.owned, flush=True);"
)


def held(lines: Iterable[str]) -> list[str]:
    """The URL and owned flag a VALKEY script printed (its log lines come first)."""
    return next(line.split()[1:] for line in lines if line.startswith("HOLD "))


def valkey_process(valkey_dir: Path) -> psutil.Process | None:
    try:
        process = psutil.Process(int((valkey_dir / "valkey.pid").read_text()))
    except (OSError, psutil.NoSuchProcess):
        return None
    return None if process.status() == psutil.STATUS_ZOMBIE else process


def answers(url: str) -> bool:
    client = valkey.Valkey.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except valkey.ConnectionError:
        return False
    finally:
        client.close()


@pytest.fixture
def valkey_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "valkey"
    left = valkey_process(tmp_path / "valkey")  # by a failed test: never outlive it
    if left is not None:
        left.kill()


def test_valkey_runs_until_the_last_process_using_it_leaves(valkey_dir: Path) -> None:
    first = start_embedded_valkey(valkey_dir)
    server = valkey_process(valkey_dir)
    assert first.owned is True
    assert server is not None
    second = start_embedded_valkey(valkey_dir)  # a second hold, here in the same process
    assert (second.url, second.owned) == (first.url, False)
    # Another process joins and leaves cleanly, a third joins and dies without a word.
    for tail in ("v.stop()", "import os; os._exit(0)"):
        out = subprocess.run(
            [sys.executable, "-c", VALKEY + tail, str(valkey_dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert held(out.stdout.splitlines()) == [first.url, "False"]
    first.stop()
    first.stop()  # once released, a hold is not released again
    assert answers(first.url)  # the second hold keeps it
    assert valkey_process(valkey_dir) == server
    second.stop()
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not answers(first.url)
    assert not (valkey_dir / "endpoint").exists()


def test_valkey_outlives_the_process_that_started_it(valkey_dir: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", VALKEY + "sys.stdin.readline(); v.stop()", str(valkey_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    assert starter.stdin is not None
    url, owned = held(starter.stdout)
    assert owned == "True"
    joined = start_embedded_valkey(valkey_dir)
    assert (joined.url, joined.owned) == (url, False)
    starter.stdin.write("\n")
    starter.stdin.flush()
    assert starter.wait(timeout=30) == 0
    server = valkey_process(valkey_dir)
    assert server is not None
    assert answers(url)  # the starter left; this process still uses it
    joined.stop()
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not answers(url)


def test_valkey_left_by_a_killed_process_is_adopted_and_stopped(valkey_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", VALKEY + "import os; os._exit(0)", str(valkey_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    url, _ = held(out.stdout.splitlines())
    orphan = valkey_process(valkey_dir)
    assert orphan is not None
    assert answers(url)
    adopter = start_embedded_valkey(valkey_dir)
    assert (adopter.url, adopter.owned) == (url, False)  # joined, no second server
    assert valkey_process(valkey_dir) == orphan
    adopter.stop()  # the only live hold: the server stops
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    assert not answers(url)
    assert valkey_process(valkey_dir) is None


async def test_app_runs_on_embedded_servers_by_default(tmp_path: Path) -> None:
    settings = Settings(env="testing", data_dir=tmp_path / "data", log_level="WARNING")
    assert settings.database_url is None
    assert settings.valkey_url is None
    from emporium.kit.db import ensure_database, resolve_database_url
    from emporium.kit.migrate import upgrade

    url = await asyncio.to_thread(resolve_database_url, settings)
    await ensure_database(settings)
    await asyncio.to_thread(upgrade, url)
    app = create_app(settings, background=True)
    try:
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client,
        ):
            await app.state.rebuild_task  # the first index build, started at boot
            ready = await client.get("/api/health/ready")
            detailed = (await client.get("/api/health/detailed")).json()
            categories = (await client.get("/api/v1/categories")).json()
            lister = app.state.session_lister
            for _ in range(500):  # the one-off listing of older login sessions
                if lister.finished:
                    break
                await asyncio.sleep(0.01)
            sessions_listed = lister.finished and not lister.running
    finally:
        start_embedded_postgres(settings.pg_dir).cleanup()
    assert ready.status_code == 200, ready.text
    assert detailed["embedded"] == {"postgres": True, "valkey": True}
    assert detailed["checks"]["outbox"]["running"] is True
    assert categories == []
    assert sessions_listed is True
    assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()


def test_valkey_keeps_its_data_across_a_restart(valkey_dir: Path) -> None:
    first = start_embedded_valkey(valkey_dir)
    client = valkey.Valkey.from_url(first.url)
    client.set("session:abc", "user-7", ex=3600)
    client.close()  # type: ignore[no-untyped-call]
    first.stop()  # the last one out saves the data set
    assert valkey_process(valkey_dir) is None
    again = start_embedded_valkey(valkey_dir)
    try:
        client = valkey.Valkey.from_url(again.url)
        assert client.get("session:abc") == b"user-7"
        assert 3500 < client.ttl("session:abc") <= 3600
        client.close()  # type: ignore[no-untyped-call]
    finally:
        again.stop()
