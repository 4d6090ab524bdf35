from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select

from emporium.auth.dependencies import Admin, CatalogWriter, CurrentUser
from emporium.kit.db import ReadSessionDep, SessionDep, UnitOfWork
from emporium.kit.errors import Forbidden, Unauthorized
from emporium.kit.schemas import CleanStr
from emporium.models import AuditLog
from emporium.order import access, queries, refunds, schemas
from emporium.order.errors import InvalidTransition, NothingToShip, NotOrderSeller, OrderNotFound
from emporium.order.metrics import REFUNDS
from emporium.order.service import orders
from emporium.order.state import OrderStatus, check_transition
from emporium.payment.errors import PaymentUnavailableError, RefundFailed
from emporium.payment.gateway import (
    PaymentError,
    PaymentGateway,
    PaymentNotFound,
    PaymentUnavailable,
)
from emporium.payment.resilience import gateway_retry_after

router = APIRouter(tags=["orders"])
OrderId = Annotated[int, Path(gt=0, le=2**63 - 1)]
_ERRORS = {**Unauthorized.responses(), **OrderNotFound.responses(), **InvalidTransition.responses()}


_REFUND_ERRORS = {**PaymentUnavailableError.responses(), **RefundFailed.responses()}


async def _refund(request: Request, charge: str) -> None:
    """Refund the whole charge before the order changes: if the gateway cannot, nothing
    does (503 when it cannot be reached, 502 when it refuses)."""
    gateway: PaymentGateway = request.app.state.gateway
    try:
        await gateway.refund(charge)
    except PaymentUnavailable as exc:
        wait = gateway_retry_after(gateway)
        raise PaymentUnavailableError(
            "the payment service is unavailable; try again later",
            **({} if wait is None else {"retry_after": wait}),
        ) from exc
    except PaymentNotFound as exc:
        raise RefundFailed(
            "the payment gateway has no record of this order's charge", reason="payment_not_found"
        ) from exc
    except PaymentError as exc:
        raise RefundFailed(
            f"the payment gateway refused the refund: {exc}", reason="payment_refused"
        ) from exc


@router.get("/orders", response_model=schemas.OrderPage)
async def list_orders(
    session: ReadSessionDep,
    user: CurrentUser,
    status: Annotated[list[OrderStatus] | None, Query(max_length=len(OrderStatus))] = None,
    cursor: Annotated[CleanStr | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> schemas.OrderPage:
    """The caller's own orders, newest first; ``?status=`` (repeatable) keeps those in
    any of the statuses given."""
    statuses = [s.value for s in status] if status else None
    return await queries.page(session, user, statuses, cursor, limit)


@router.get("/orders/{order_id}", response_model=schemas.Order, responses=_ERRORS)
async def get_order(session: ReadSessionDep, user: CurrentUser, order_id: OrderId) -> schemas.Order:
    return await queries.serialize(session, await queries.get_visible(session, user, order_id))


@router.post("/orders/{order_id}/cancel", response_model=schemas.Order, responses=_ERRORS)
async def cancel_order(
    request: Request, session: ReadSessionDep, user: CurrentUser, order_id: OrderId
) -> schemas.Order:
    """The buyer (or an admin) cancels an order that has not shipped. A captured payment
    is refunded once the cancel has committed: the order's ``payment.status`` is then
    ``refunded``, or ``refund_pending`` while the gateway cannot be reached (the refund
    is retried in the background), or ``refund_failed`` if the gateway refuses it."""
    await queries.get_visible(session, user, order_id)
    await session.close()  # no transaction stays open across the gateway call
    maker = request.app.state.sessionmaker
    async with UnitOfWork(maker) as uow:
        _, due = await orders.cancel(uow, user, order_id, "cancelled by request")
    if due is not None:
        await refunds.settle(maker, request.app.state.gateway, due, user)
    async with maker() as fresh:
        return await queries.serialize(fresh, await queries.get_visible(fresh, user, order_id))


# What an admin or a seller still has to ship, unless asked for other statuses.
TO_SHIP = (OrderStatus.paid, OrderStatus.partially_shipped)


_STAFF = {**Unauthorized.responses(), **Forbidden.responses()}


@router.get("/fulfillment/orders", response_model=schemas.FulfillmentPage, responses=_STAFF)
async def list_fulfillment(
    session: ReadSessionDep,
    user: CatalogWriter,
    status: Annotated[list[OrderStatus] | None, Query(max_length=len(OrderStatus))] = None,
    cursor: Annotated[CleanStr | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> schemas.FulfillmentPage:
    """Orders to fulfil, newest first: all of them for an admin, those with an item of
    theirs for a seller; each with its units by warehouse, one shipment each.

    A seller sees only its own products' units, and only the warehouses that hold some
    (with their shipments); ``status`` is still the whole order's. A warehouse that also
    holds another seller's units is shipped by an admin."""
    statuses = [s.value for s in (status or TO_SHIP)]
    return await queries.fulfillment_page(session, user, statuses, cursor, limit)


@router.get(
    "/fulfillment/orders/{order_id}",
    response_model=schemas.FulfillmentOrder,
    responses={**_STAFF, **OrderNotFound.responses()},
)
async def get_fulfillment(
    session: ReadSessionDep, user: CatalogWriter, order_id: OrderId
) -> schemas.FulfillmentOrder:
    """One order to fulfil, as in the list: a seller sees only its own units. An order
    with no item of the seller's answers 404, as a missing one does."""
    return await queries.fulfillment_order(session, user, order_id)


@router.post(
    "/orders/{order_id}/ship",
    response_model=schemas.Order,
    responses={**_ERRORS, **NotOrderSeller.responses(), **NothingToShip.responses()},
)
async def ship_order(
    session: SessionDep, user: CatalogWriter, order_id: OrderId, body: schemas.ShipRequest
) -> schemas.Order:
    """Record the shipment of one warehouse's allocation: an admin's any, a seller's only
    if every unit in it is of its own products (403 ``not_order_seller`` otherwise). An
    order with no item of the seller's answers 404, as a missing one does."""
    await queries.get_visible_for_staff(session, user, order_id)
    order = await orders.ship(session, user, order_id, body.warehouse_id, body.tracking_number)
    return await access.staff_view(session, user, await queries.serialize(session, order))


@router.post(
    "/orders/{order_id}/deliver",
    response_model=schemas.Order,
    responses={**_ERRORS, **NotOrderSeller.responses()},
)
async def deliver_order(
    session: SessionDep, user: CatalogWriter, order_id: OrderId
) -> schemas.Order:
    """Mark a shipped order delivered: an admin any, a seller only one whose every item
    is its own (403 ``not_order_seller`` otherwise; 404 with no item of its own)."""
    await queries.get_visible_for_staff(session, user, order_id)
    order = await orders.deliver(session, user, order_id)
    return await access.staff_view(session, user, await queries.serialize(session, order))


@router.post(
    "/orders/{order_id}/refund",
    response_model=schemas.Order,
    responses={**_ERRORS, **NotOrderSeller.responses(), **_REFUND_ERRORS},
)
async def refund_order(
    request: Request,
    session: ReadSessionDep,
    user: CatalogWriter,
    order_id: OrderId,
    body: schemas.RefundRequest | None = None,
) -> schemas.Order:
    """Refund a delivered order, optionally restocking the units: an admin any, a seller
    only one whose every item is its own (403 ``not_order_seller`` otherwise; 404 with no
    item of its own). Refused before the gateway is asked."""
    order = await queries.get_visible_for_staff(session, user, order_id)
    await access.check_order(session, user, order_id, "refund")
    status = order.status
    payment = await orders.payment(session, order_id)
    charge = payment.gateway_payment_id if payment is not None else None
    await session.close()
    if status != OrderStatus.delivered.value:
        check_transition(status, OrderStatus.refunded)
    if charge:
        await _refund(request, charge)
        REFUNDS.labels("refunded").inc()
    async with UnitOfWork(request.app.state.sessionmaker) as uow:
        refunded = await orders.refund(uow, user, order_id, restock=bool(body and body.restock))
        return await access.staff_view(uow, user, await queries.serialize(uow, refunded))


@router.get("/admin/audit", response_model=list[schemas.AuditEntry])
async def audit_trail(
    session: ReadSessionDep,
    user: Admin,
    resource_type: Annotated[CleanStr | None, Query(max_length=50)] = None,
    resource_id: Annotated[CleanStr | None, Query(max_length=100)] = None,
    actor_id: Annotated[int | None, Query(gt=0, le=2**63 - 1)] = None,
    before_id: Annotated[
        int | None,
        Query(gt=0, le=2**63 - 1, description="Only entries older than this one (the next page)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[schemas.AuditEntry]:
    """The immutable audit trail, newest first; pass the last entry's id as ``before_id``
    for the next page."""
    stmt = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if before_id:
        stmt = stmt.where(AuditLog.id < before_id)
    if resource_type:
        stmt = stmt.where(AuditLog.entity_type == resource_type)
    if resource_id:
        stmt = stmt.where(AuditLog.entity_id == resource_id)
    if actor_id:
        stmt = stmt.where(AuditLog.actor_user_id == actor_id)
    rows = (await session.execute(stmt)).scalars().all()
    return [schemas.AuditEntry.model_validate(r) for r in rows]
