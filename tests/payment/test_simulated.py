"""The in-process simulated card gateway: validation, test cards, idempotency, state machine."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from decimal import Decimal

import pytest

from emporium.payment.gateway import (
    Card,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentNotFound,
    PaymentStateError,
    PaymentStatus,
    PaymentTransientError,
)
from emporium.payment.simulated import (
    CARD_DECLINED,
    CARD_HANG,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_PROCESSING_ERROR,
    SimulatedGateway,
    card_problem,
    expiry_valid,
    luhn_valid,
)

TODAY = date(2026, 5, 15)


def card(number: str = CARD_OK, exp: str = "12/99", cvc: str = "123") -> Card:
    return Card(number=number, exp=exp, cvc=cvc)


def gateway(**kwargs: float) -> SimulatedGateway:
    return SimulatedGateway(today=lambda: TODAY, **kwargs)


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        (CARD_OK, True),
        (CARD_DECLINED, True),
        (CARD_INSUFFICIENT_FUNDS, True),
        (CARD_PROCESSING_ERROR, True),
        (CARD_HANG, True),
        ("5555555555554444", True),
        ("4242424242424241", False),
        ("424242424242424x", False),
        ("42424", False),
        ("", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("exp", "valid"),
    [
        ("05/26", True),  # the current month still works
        ("05/2026", True),
        ("06/26", True),
        ("12/99", True),
        ("01/2100", True),
        ("04/26", False),
        ("04/2026", False),
        ("12/25", False),
        ("13/30", False),
        ("00/30", False),
        ("5/30", False),
        ("05/030", False),
        ("0530", False),
        ("", False),
    ],
)
def test_expiry(exp: str, valid: bool) -> None:
    assert expiry_valid(exp, TODAY) is valid


def test_card_problem() -> None:
    assert card_problem(card(), TODAY) is None
    assert card_problem(card("4242 4242 4242 4242"), TODAY) is None
    assert card_problem(card("4242-4242-4242-4242"), TODAY) is None
    assert card_problem(card("4242424242424241"), TODAY) == "incorrect_number"
    assert card_problem(card(exp="04/26"), TODAY) == "expired_card"
    for exp in ("4/26", "13/30", "12-30", ""):
        assert card_problem(card(exp=exp), TODAY) == "invalid_expiry"
    for cvc in ("12", "1234", "abc", ""):
        assert card_problem(card(cvc=cvc), TODAY) == "incorrect_cvc"


async def test_success_card_authorizes() -> None:
    gw = gateway()
    p = await gw.authorize(
        idempotency_key="k1", amount=Decimal("12.30"), currency="USD", card=card()
    )
    assert p.status is PaymentStatus.authorized
    assert p.amount == Decimal("12.30")
    assert str(p.amount) == "12.30"
    assert p.currency == "USD"
    assert p.card_last4 == "4242"
    assert p.decline_code is None
    assert p.idempotency_key == "k1"
    assert p.id.startswith("pay_")
    assert gw.charges == 1
    assert await gw.get_by_idempotency_key("k1") == p
    assert await gw.get_by_idempotency_key("nope") is None


@pytest.mark.parametrize(
    ("c", "code", "last4"),
    [
        (card(CARD_DECLINED), "card_declined", "0002"),
        (card(CARD_INSUFFICIENT_FUNDS), "insufficient_funds", "9995"),
        (card("4242424242424241"), "incorrect_number", "4241"),
        (card(exp="04/26"), "expired_card", "4242"),
        (card(exp="4/26"), "invalid_expiry", "4242"),
        (card(cvc="12"), "incorrect_cvc", "4242"),
        # Bad details win over what the number would otherwise do.
        (card(CARD_PROCESSING_ERROR, cvc="1"), "incorrect_cvc", "0119"),
        (card(CARD_HANG, exp="01/20"), "expired_card", "0259"),
    ],
)
async def test_declines(c: Card, code: str, last4: str) -> None:
    gw = gateway()
    with pytest.raises(PaymentDeclined) as exc_info:
        await gw.authorize(idempotency_key="k", amount=Decimal("5.00"), currency="EUR", card=c)
    declined = exc_info.value
    assert declined.code == code
    assert declined.payment is not None
    assert declined.payment.status is PaymentStatus.declined
    assert declined.payment.decline_code == code
    assert declined.payment.card_last4 == last4
    assert gw.charges == 0
    assert await gw.get_by_idempotency_key("k") == declined.payment
    # The replay gives the same decline for the same payment, not a new attempt.
    with pytest.raises(PaymentDeclined) as again:
        await gw.authorize(idempotency_key="k", amount=Decimal("5.00"), currency="EUR", card=c)
    assert again.value.payment == declined.payment


async def test_processing_error_card_is_transient_and_not_stored() -> None:
    gw = gateway()
    for _ in range(2):
        with pytest.raises(PaymentTransientError):
            await gw.authorize(
                idempotency_key="k",
                amount=Decimal("1"),
                currency="USD",
                card=card(CARD_PROCESSING_ERROR),
            )
    assert gw.calls["authorize"] == 2
    assert gw.charges == 0
    assert await gw.get_by_idempotency_key("k") is None


async def test_hang_card_is_slow_then_succeeds() -> None:
    gw = gateway(hang_seconds=0.2)
    start = time.perf_counter()
    p = await gw.authorize(
        idempotency_key="k", amount=Decimal("1"), currency="USD", card=card(CARD_HANG)
    )
    assert time.perf_counter() - start >= 0.2
    assert p.status is PaymentStatus.authorized
    assert gw.charges == 1


async def test_hang_card_cancelled_by_timeout_charges_nothing() -> None:
    gw = gateway()  # hangs 60 s
    start = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await gw.authorize(
                idempotency_key="k", amount=Decimal("1"), currency="USD", card=card(CARD_HANG)
            )
    assert time.perf_counter() - start < 1.0
    assert gw.charges == 0
    assert await gw.get_by_idempotency_key("k") is None


async def test_concurrent_authorizations_with_one_key_charge_once() -> None:
    gw = gateway(latency=0.01)
    payments = await asyncio.gather(
        *(
            gw.authorize(
                idempotency_key="same", amount=Decimal("99.99"), currency="USD", card=card()
            )
            for _ in range(20)
        )
    )
    assert gw.calls["authorize"] == 20
    assert gw.charges == 1
    assert len({p.id for p in payments}) == 1
    assert await gw.get_by_idempotency_key("same") == payments[0]


async def test_distinct_keys_charge_separately() -> None:
    gw = gateway(latency=0.01)
    payments = await asyncio.gather(
        *(
            gw.authorize(idempotency_key=f"k{i}", amount=Decimal("1"), currency="USD", card=card())
            for i in range(5)
        )
    )
    assert gw.charges == 5
    assert len({p.id for p in payments}) == 5


async def test_key_reuse_with_other_parameters_conflicts() -> None:
    gw = gateway()
    await gw.authorize(idempotency_key="k", amount=Decimal("10.00"), currency="USD", card=card())
    with pytest.raises(IdempotencyConflict):
        await gw.authorize(
            idempotency_key="k", amount=Decimal("11.00"), currency="USD", card=card()
        )
    with pytest.raises(IdempotencyConflict):
        await gw.authorize(
            idempotency_key="k", amount=Decimal("10.00"), currency="EUR", card=card()
        )
    with pytest.raises(IdempotencyConflict):
        await gw.authorize(
            idempotency_key="k",
            amount=Decimal("10.00"),
            currency="USD",
            card=card("5555555555554444"),
        )
    assert gw.charges == 1


@pytest.mark.parametrize(
    ("key", "amount", "currency"),
    [
        ("", Decimal("1"), "USD"),
        ("k", Decimal("0"), "USD"),
        ("k", Decimal("-1"), "USD"),
        ("k", Decimal("NaN"), "USD"),
        ("k", Decimal("1"), "usd"),
        ("k", Decimal("1"), "DOLLAR"),
    ],
)
async def test_bad_requests(key: str, amount: Decimal, currency: str) -> None:
    gw = gateway()
    with pytest.raises(PaymentError) as exc_info:
        await gw.authorize(idempotency_key=key, amount=amount, currency=currency, card=card())
    assert type(exc_info.value) is PaymentError
    assert gw.charges == 0


async def test_capture_and_refunds() -> None:
    gw = gateway()
    p = await gw.authorize(
        idempotency_key="k", amount=Decimal("12.30"), currency="USD", card=card()
    )
    captured = await gw.capture(p.id)
    assert captured.status is PaymentStatus.captured
    assert await gw.capture(p.id) == captured  # a retried capture changes nothing
    with pytest.raises(PaymentStateError):
        await gw.void(p.id)
    partial = await gw.refund(p.id, Decimal("4.30"))
    assert partial.status is PaymentStatus.captured
    assert partial.refunded_amount == Decimal("4.30")
    with pytest.raises(PaymentStateError):
        await gw.refund(p.id, Decimal("8.01"))
    with pytest.raises(PaymentError):
        await gw.refund(p.id, Decimal("0"))
    full = await gw.refund(p.id)
    assert full.status is PaymentStatus.refunded
    assert full.refunded_amount == Decimal("12.30")
    assert await gw.refund(p.id) == full  # a retried full refund changes nothing
    with pytest.raises(PaymentStateError):
        await gw.refund(p.id, Decimal("1"))
    with pytest.raises(PaymentStateError):
        await gw.capture(p.id)
    assert await gw.get_by_idempotency_key("k") == full


async def test_partial_refunds_adding_up_to_the_total_refund_it() -> None:
    gw = gateway()
    p = await gw.authorize(
        idempotency_key="k", amount=Decimal("10.00"), currency="USD", card=card()
    )
    await gw.capture(p.id)
    assert (await gw.refund(p.id, Decimal("6.00"))).status is PaymentStatus.captured
    last = await gw.refund(p.id, Decimal("4.00"))
    assert last.status is PaymentStatus.refunded
    assert last.refunded_amount == Decimal("10.00")


async def test_void_and_what_a_void_forbids() -> None:
    gw = gateway()
    p = await gw.authorize(idempotency_key="k", amount=Decimal("3"), currency="USD", card=card())
    voided = await gw.void(p.id)
    assert voided.status is PaymentStatus.voided
    assert await gw.void(p.id) == voided
    with pytest.raises(PaymentStateError) as exc_info:
        await gw.refund(p.id)
    assert exc_info.value.payment == voided
    with pytest.raises(PaymentStateError):
        await gw.capture(p.id)


async def test_declined_and_unknown_payments_cannot_move() -> None:
    gw = gateway()
    with pytest.raises(PaymentDeclined) as exc_info:
        await gw.authorize(
            idempotency_key="k", amount=Decimal("3"), currency="USD", card=card(CARD_DECLINED)
        )
    assert exc_info.value.payment is not None
    pid = exc_info.value.payment.id
    for op in (gw.capture, gw.void, gw.refund):
        with pytest.raises(PaymentStateError):
            await op(pid)
    for op in (gw.capture, gw.void, gw.refund):
        with pytest.raises(PaymentNotFound):
            await op("pay_missing")
