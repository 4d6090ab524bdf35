"""Builds the configured payment gateway."""

from __future__ import annotations

import valkey.asyncio as valkey_async

from emporium.config import Settings
from emporium.payment.http import HttpGateway
from emporium.payment.ledger import ValkeyLedger
from emporium.payment.resilience import CircuitBreaker, ResilientGateway
from emporium.payment.simulated import SimulatedGateway


def build_gateway(settings: Settings, store: valkey_async.Valkey | None = None) -> ResilientGateway:
    """The simulated gateway over HTTP when EMPORIUM_PAYMENT_GATEWAY_URL is set, else
    in-process, keeping its payments in the Valkey of ``store`` (in memory without one);
    always behind the breaker and retries. Call ``aclose()`` on shutdown."""
    breaker = CircuitBreaker(
        timeout=settings.payment_timeout_seconds,
        error_threshold=settings.payment_breaker_error_threshold,
        reset_seconds=settings.payment_breaker_reset_seconds,
        volume=settings.payment_breaker_volume,
    )
    if settings.payment_gateway_url:
        inner: HttpGateway | SimulatedGateway = HttpGateway(
            settings.payment_gateway_url, timeout=settings.payment_timeout_seconds
        )
    else:
        inner = SimulatedGateway(ledger=None if store is None else ValkeyLedger(store))
    return ResilientGateway(inner, breaker)
