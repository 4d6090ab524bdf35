"""Embedded servers: the default when no URL is configured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psutil
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


def test_second_process_joins_embedded_valkey(tmp_path: Path) -> None:
    owner = start_embedded_valkey(tmp_path / "valkey")
    try:
        joiner = start_embedded_valkey(tmp_path / "valkey")
        assert joiner.owned is False
        assert joiner.url == owner.url
        assert owner.owned is True
    finally:
        owner.stop()
    assert not (tmp_path / "valkey" / "endpoint").exists()


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
    finally:
        start_embedded_postgres(settings.pg_dir).cleanup()
    assert ready.status_code == 200, ready.text
    assert detailed["embedded"] == {"postgres": True, "valkey": True}
    assert detailed["checks"]["outbox"]["running"] is True
    assert categories == []
    assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()
