"""Lists the login sessions that predate the per-user session lists, once."""

from __future__ import annotations

import structlog

from emporium.accounts.sessions import SessionStore
from emporium.kit.jobs import PeriodicJob

log = structlog.get_logger(__name__)


class SessionLister(PeriodicJob):
    """Runs ``SessionStore.list_unlisted`` until it has succeeded once (Valkey may be
    unreachable at start-up)."""

    name = "session-lister"

    def __init__(self, store: SessionStore, *, interval_seconds: float = 60.0) -> None:
        super().__init__(interval_seconds)
        self._store = store

    async def run_once(self) -> int | None:
        listed = await self._store.list_unlisted()
        self.finished = True
        if listed:
            log.info("sessions.listed", sessions=listed)
        return listed
