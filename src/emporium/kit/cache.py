"""Valkey: connection, health check and a JSON cache that never fails a request."""

from __future__ import annotations

from typing import Any

import structlog
import valkey.asyncio as valkey_async
from valkey.exceptions import ValkeyError

from emporium.kit import jsoncodec
from emporium.kit.metrics import CACHE_REQUESTS

log = structlog.get_logger(__name__)


class Cache:
    def __init__(self, url: str, prefix: str = "emporium:") -> None:
        self.url = url
        self.prefix = prefix
        self.client: valkey_async.Valkey = valkey_async.Valkey.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def get_json(self, key: str) -> Any | None:
        try:
            raw = await self.client.get(self.prefix + key)
        except (ValkeyError, OSError) as exc:
            log.warning("cache.get_failed", key=key, error=str(exc))
            CACHE_REQUESTS.labels("error").inc()
            return None
        CACHE_REQUESTS.labels("hit" if raw is not None else "miss").inc()
        return None if raw is None else jsoncodec.loads(raw)

    async def set_json(self, key: str, value: Any, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            return
        try:
            await self.client.set(self.prefix + key, jsoncodec.dumps_bytes(value), ex=ttl_seconds)
        except (ValkeyError, OSError) as exc:
            log.warning("cache.set_failed", key=key, error=str(exc))

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        try:
            await self.client.delete(*(self.prefix + k for k in keys))
        except (ValkeyError, OSError) as exc:
            log.warning("cache.delete_failed", keys=keys, error=str(exc))

    async def close(self) -> None:
        await self.client.aclose()
