"""Payment failures as the API reports them."""

from __future__ import annotations

from fastapi import status

from emporium.kit.errors import AppError


class PaymentUnavailableError(AppError):
    """The gateway cannot be reached (breaker open, retries exhausted): nothing changed."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "payment_unavailable"


class RefundFailed(AppError):
    """The gateway refused the refund (it does not know the charge, or its state forbids
    it): the order is left as it was."""

    status_code = status.HTTP_502_BAD_GATEWAY
    code = "refund_failed"
