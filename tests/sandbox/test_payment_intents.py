"""PaymentIntents through the official SDK: Stripe's test cards give Stripe's outcomes and
events (success, declines, 3-D Secure, off-session authentication, manual capture, ACH)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests.sandbox.payments_support import (
    advance_sandbox_clock,
    authenticate,
    last_event_id,
    payment_events,
    settle,
)
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import SandboxServer


def _customer(client: stripe.StripeClient) -> str:
    return str(client.v1.customers.create(params={"email": "payer@example.com"}).id)


def test_visa_payment_succeeds_with_charge_and_events(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order": "42"},
            "description": "Pro plan",
        }
    )
    assert pi.status == "succeeded"
    assert pi.amount_received == 2000
    # Stripe's test ids become a fresh PaymentMethod each time.
    assert pi.payment_method.startswith("pm_") and pi.payment_method != "pm_card_visa"
    assert pi.client_secret.startswith(pi.id + "_secret_")
    assert_stripe_shape(pi, "payment_intent")

    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.status, charge.paid, charge.captured) == ("succeeded", True, True)
    assert charge.amount_captured == 2000
    assert charge.payment_intent == pi.id
    assert charge.customer == customer
    assert charge.metadata["order"] == "42"
    details = charge.payment_method_details.card
    assert (details.brand, details.last4, details.funding) == ("visa", "4242", "credit")
    assert charge.outcome.type == "authorized"
    assert_stripe_shape(charge, "charge")

    assert payment_events(stripe_client) == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    listed = stripe_client.v1.charges.list(params={"payment_intent": pi.id}).data
    assert [c.id for c in listed] == [charge.id]
    assert [p.id for p in stripe_client.v1.payment_intents.list({"customer": customer}).data] == [
        pi.id
    ]


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code", "message"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline", "Your card was declined."),
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "card_declined",
            "insufficient_funds",
            "Your card has insufficient funds.",
        ),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card", "expired"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc", "security code"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", None, "processing"),
    ],
)
def test_declines_raise_card_error_and_leave_last_payment_error(
    stripe_client: stripe.StripeClient,
    payment_method: str,
    code: str,
    decline_code: str | None,
    message: str,
) -> None:
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 1500,
                "currency": "usd",
                "payment_method": payment_method,
                "confirm": True,
            }
        )
    error = info.value
    assert error.http_status == 402
    assert error.code == code
    if decline_code is not None and code == "card_declined":
        assert error.error.decline_code == decline_code
    assert message in str(error.user_message)
    failed_pi = error.error.payment_intent
    assert failed_pi.status == "requires_payment_method"
    assert failed_pi.last_payment_error.code == code

    pi = stripe_client.v1.payment_intents.retrieve(failed_pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.type == "card_error"
    assert pi.payment_method is None
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.status, charge.paid, charge.failure_code) == ("failed", False, code)
    assert payment_events(stripe_client) == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
    ]

    # The customer tries again with a good card: the same intent succeeds.
    retried = stripe_client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": "pm_card_mastercard"}
    )
    assert retried.status == "succeeded"
    assert retried.last_payment_error is None


def test_raw_card_numbers_behave_like_the_documented_test_cards(
    stripe_client: stripe.StripeClient,
) -> None:
    def card(number: str) -> dict[str, object]:
        return {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }

    ok = stripe_client.v1.payment_intents.create(
        params={
            "amount": 990,
            "currency": "usd",
            "payment_method_data": card("4242424242424242"),
            "confirm": True,
        }
    )
    assert ok.status == "succeeded"
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 990,
                "currency": "usd",
                "payment_method_data": card("4000000000009995"),
                "confirm": True,
            }
        )
    assert info.value.error.decline_code == "insufficient_funds"
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 990,
                "currency": "usd",
                "payment_method_data": card("4000000000000002"),
                "confirm": True,
            }
        )
    assert info.value.error.decline_code == "generic_decline"


def test_charge_customer_fail_card_attaches_but_every_charge_fails(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    pm = stripe_client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000000000000341", "exp_month": 1, "exp_year": 2035, "cvc": "314"},
        }
    )
    attached = stripe_client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    assert attached.customer == customer
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "usd",
                "customer": customer,
                "payment_method": pm.id,
                "off_session": True,
                "confirm": True,
            }
        )
    assert info.value.code == "card_declined"
    assert info.value.error.payment_intent.last_payment_error.payment_method.id == pm.id


def test_three_d_secure_on_session_waits_for_authentication(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "eur",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"
    assert pi.latest_charge is None
    with_return = stripe_client.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "eur",
            "payment_method": "pm_card_threeDSecure2Required",
            "confirm": True,
            "return_url": "https://shop.example.com/return",
        }
    )
    assert with_return.next_action.type == "redirect_to_url"
    assert with_return.next_action.redirect_to_url.return_url == "https://shop.example.com/return"
    assert "/pages/authenticate/" + with_return.id in with_return.next_action.redirect_to_url.url

    mark = last_event_id(stripe_client)
    done = authenticate(stripe_client, pi.id, "succeed")
    assert done["status"] == "succeeded"
    charge = stripe_client.v1.charges.retrieve(done["latest_charge"])
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"
    assert payment_events(stripe_client, since=mark) == [
        "charge.succeeded",
        "payment_intent.succeeded",
    ]

    failed = authenticate(stripe_client, with_return.id, "fail")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    with pytest.raises(stripe.InvalidRequestError) as info:
        authenticate(stripe_client, pi.id, "succeed")
    assert info.value.code == "payment_intent_unexpected_state"


def test_off_session_authentication_required_is_a_card_error_with_the_intent(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    pm = stripe_client.v1.payment_methods.attach(
        "pm_card_authenticationRequired", params={"customer": customer}
    )
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 1200,
                "currency": "usd",
                "customer": customer,
                "payment_method": pm.id,
                "off_session": True,
                "confirm": True,
            }
        )
    assert info.value.code == "authentication_required"
    assert info.value.error.decline_code == "authentication_required"
    pi = info.value.error.payment_intent
    assert pi.status == "requires_payment_method"
    # Bring the customer back on-session: confirming again asks for 3-D Secure.
    again = stripe_client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": pm.id, "off_session": False}
    )
    assert again.status == "requires_action"
    assert authenticate(stripe_client, pi.id)["status"] == "succeeded"


def test_card_set_up_with_authentication_pays_off_session_but_not_on_session(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    si = stripe_client.v1.setup_intents.create(
        params={
            "customer": customer,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "payment_method_types": ["card"],
            "confirm": True,
        }
    )
    assert si.status == "requires_action"
    assert authenticate(stripe_client, si.id)["status"] == "succeeded"
    pm = stripe_client.v1.setup_intents.retrieve(si.id).payment_method
    off = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer,
            "payment_method": pm,
            "off_session": True,
            "confirm": True,
        }
    )
    assert off.status == "succeeded"
    on = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer,
            "payment_method": pm,
            "confirm": True,
        }
    )
    assert on.status == "requires_action"


def test_card_not_set_up_fails_off_session(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    pm = stripe_client.v1.payment_methods.attach(
        "pm_card_authenticationRequiredOnSetup", params={"customer": customer}
    )
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 2500,
                "currency": "usd",
                "customer": customer,
                "payment_method": pm.id,
                "off_session": True,
                "confirm": True,
            }
        )
    assert info.value.code == "authentication_required"


def test_setup_future_usage_attaches_and_sets_up_the_card(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "setup_future_usage": "off_session",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    mark = last_event_id(stripe_client)
    assert authenticate(stripe_client, pi.id)["status"] == "succeeded"
    assert payment_events(stripe_client, since=mark) == [
        "payment_method.attached",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    saved = stripe_client.v1.payment_methods.retrieve(pi.payment_method)
    assert saved.customer == customer
    renewal = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer,
            "payment_method": saved.id,
            "off_session": True,
            "confirm": True,
        }
    )
    assert renewal.status == "succeeded"


def test_manual_capture_partial_then_refund_limits(stripe_client: stripe.StripeClient) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        }
    )
    assert pi.status == "requires_capture"
    assert pi.amount_capturable == 1000
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.captured, charge.paid, charge.amount_captured) == (False, True, 0)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 1001})
    assert info.value.param == "amount_to_capture"

    captured = stripe_client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 600})
    assert (captured.status, captured.amount_received, captured.amount_capturable) == (
        "succeeded",
        600,
        0,
    )
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.captured, charge.amount_captured) == (True, 600)
    assert payment_events(stripe_client) == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.amount_capturable_updated",
        "charge.captured",
        "payment_intent.succeeded",
    ]
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 601})
    assert info.value.param == "amount"
    assert "is greater than unrefunded amount on charge ($6.00)" in str(info.value.user_message)
    refund = stripe_client.v1.refunds.create(params={"payment_intent": pi.id})
    assert refund.amount == 600
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.capture(pi.id)
    assert info.value.code == "payment_intent_unexpected_state"


def test_cancel_releases_an_authorization_and_refuses_succeeded(
    stripe_client: stripe.StripeClient,
) -> None:
    held = stripe_client.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        }
    )
    canceled = stripe_client.v1.payment_intents.cancel(
        held.id, params={"cancellation_reason": "abandoned"}
    )
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    assert canceled.canceled_at is not None
    charge = stripe_client.v1.charges.retrieve(held.latest_charge)
    assert (charge.refunded, charge.amount_refunded) == (True, 700)

    draft = stripe_client.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})
    assert draft.status == "requires_payment_method"
    assert stripe_client.v1.payment_intents.cancel(draft.id).status == "canceled"

    paid = stripe_client.v1.payment_intents.create(
        params={"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.cancel(paid.id)
    assert info.value.code == "payment_intent_unexpected_state"
    assert "status of succeeded" in str(info.value.user_message)
    types = payment_events(stripe_client)
    assert types.count("payment_intent.canceled") == 2


def test_two_step_create_update_confirm_and_validation(stripe_client: stripe.StripeClient) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "payment_method_types": ["card"]}
    )
    assert pi.status == "requires_payment_method"
    assert pi.automatic_payment_methods is None
    updated = stripe_client.v1.payment_intents.update(
        pi.id, params={"amount": 1250, "payment_method": "pm_card_amex", "metadata": {"a": "b"}}
    )
    assert (updated.status, updated.amount) == ("requires_confirmation", 1250)
    confirmed = stripe_client.v1.payment_intents.confirm(pi.id)
    assert confirmed.status == "succeeded"
    charge = stripe_client.v1.charges.retrieve(confirmed.latest_charge)
    assert charge.payment_method_details.card.brand == "amex"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.update(pi.id, params={"amount": 5})
    assert info.value.code == "payment_intent_unexpected_state"

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.create(params={"amount": 20, "currency": "usd"})
    assert (info.value.code, info.value.param) == ("amount_too_small", "amount")
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.create(params={"amount": 2000})  # type: ignore[typeddict-item]
    assert info.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.create(
            params={"amount": 2000, "currency": "usd", "colour": "red"}  # type: ignore[typeddict-unknown-key]
        )
    assert info.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.create(
            params={"amount": 2000, "currency": "usd", "payment_method": "pm_nope", "confirm": True}
        )
    assert info.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.confirm(
            stripe_client.v1.payment_intents.create(params={"amount": 900, "currency": "usd"}).id
        )
    assert info.value.code == "payment_intent_unexpected_state"


def test_idempotent_create_returns_the_same_intent(stripe_client: stripe.StripeClient) -> None:
    params: dict[str, object] = {
        "amount": 4200,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }
    first = stripe_client.v1.payment_intents.create(
        params=params,  # type: ignore[arg-type]
        options={"idempotency_key": "order-42"},
    )
    second = stripe_client.v1.payment_intents.create(
        params=params,  # type: ignore[arg-type]
        options={"idempotency_key": "order-42"},
    )
    assert first.id == second.id
    assert len(stripe_client.v1.charges.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.payment_intents.create(
            params={**params, "amount": 4300},  # type: ignore[arg-type]
            options={"idempotency_key": "order-42"},
        )


def test_search_by_status_and_customer(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    ok = stripe_client.v1.payment_intents.create(
        params={
            "amount": 800,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    stripe_client.v1.payment_intents.create(params={"amount": 800, "currency": "usd"})
    found = stripe_client.v1.payment_intents.search(
        params={"query": f"status:'succeeded' AND customer:'{customer}'"}
    )
    assert [p.id for p in found.data] == [ok.id]


def test_ach_debit_processes_then_settles_when_the_clock_moves(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 10000,
            "currency": "usd",
            "customer": customer,
            "payment_method_types": ["us_bank_account"],
            "payment_method": "pm_usBankAccount_success",
            "confirm": True,
        }
    )
    assert pi.status == "processing"
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.status, charge.paid) == ("pending", False)
    assert charge.payment_method_details.type == "us_bank_account"
    assert charge.payment_method_details.us_bank_account.last4 == "6789"
    advance_sandbox_clock(stripe_client, 86400)
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "processing"
    advance_sandbox_clock(stripe_client, 4 * 86400)
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert stripe_client.v1.charges.retrieve(pi.latest_charge).status == "succeeded"
    assert payment_events(stripe_client) == [
        "payment_intent.created",
        "payment_intent.processing",
        "charge.pending",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]


def test_ach_failing_account_fails_at_settlement(stripe_client: stripe.StripeClient) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 10000,
            "currency": "usd",
            "payment_method": "pm_usBankAccount_insufficientFunds",
            "confirm": True,
        }
    )
    assert pi.status == "processing"
    failed = settle(stripe_client, pi.id)
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "insufficient_funds"
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.status, charge.failure_code) == ("failed", "insufficient_funds")
    assert payment_events(stripe_client)[-2:] == ["charge.failed", "payment_intent.payment_failed"]


def test_ach_processing_account_stays_processing_and_can_be_canceled(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 10000,
            "currency": "usd",
            "payment_method": "pm_usBankAccount_processing",
            "confirm": True,
        }
    )
    advance_sandbox_clock(stripe_client, 30 * 86400)
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "processing"
    assert stripe_client.v1.payment_intents.cancel(pi.id).status == "canceled"


def test_ach_on_a_test_clock_settles_when_the_clock_advances(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    start = 1_800_000_000
    clock = stripe_client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = stripe_client.v1.customers.create(params={"test_clock": clock.id})
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_usBankAccount_success",
            "confirm": True,
        }
    )
    assert pi.created == start
    assert pi.status == "processing"
    # A Friday (2027-01-15): four business days later is the Thursday after the weekend.
    stripe_client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": start + 7 * 86400}
    )
    settled = stripe_client.v1.payment_intents.retrieve(pi.id)
    assert settled.status == "succeeded"
    succeeded = [
        e for e in stripe_client.v1.events.list(params={"type": "payment_intent.succeeded"}).data
    ]
    assert succeeded[0].created == start + 6 * 86400


def test_manually_entered_bank_account_needs_microdeposits_first(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 10000,
            "currency": "usd",
            "payment_method_types": ["us_bank_account"],
            "payment_method_data": {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                    "account_holder_type": "individual",
                },
                "billing_details": {"name": "Jenny Rosen"},
            },
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    assert pi.next_action.type == "verify_with_microdeposits"
    verified = stripe_client.v1.payment_intents.verify_microdeposits(
        pi.id, params={"descriptor_code": "SM11AA"}
    )
    assert verified.status == "processing"


async def test_async_client_pays_and_refunds(stripe_client: stripe.StripeClient) -> None:
    customer = await stripe_client.v1.customers.create_async(params={"email": "a@example.com"})
    pi = await stripe_client.v1.payment_intents.create_async(
        params={"amount": 1999, "currency": "usd", "customer": customer.id}
    )
    confirmed = await stripe_client.v1.payment_intents.confirm_async(
        pi.id, params={"payment_method": "pm_card_visa"}
    )
    assert confirmed.status == "succeeded"
    with pytest.raises(stripe.CardError):
        await stripe_client.v1.payment_intents.create_async(
            params={
                "amount": 1999,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
                "confirm": True,
            }
        )
    refund = await stripe_client.v1.refunds.create_async(params={"payment_intent": pi.id})
    assert refund.amount == 1999
    listed = await stripe_client.v1.payment_intents.list_async(params={"customer": customer.id})
    assert [p.id for p in listed.data] == [pi.id]


def test_manual_confirmation_and_error_on_requires_action(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1800,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirmation_method": "manual",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    # With manual confirmation the server confirms again after the challenge.
    assert authenticate(stripe_client, pi.id)["status"] == "requires_confirmation"
    assert stripe_client.v1.payment_intents.confirm(pi.id).status == "succeeded"

    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 1800,
                "currency": "usd",
                "payment_method": "pm_card_authenticationRequired",
                "error_on_requires_action": True,
                "confirm": True,
            }
        )
    assert info.value.code == "authentication_required"
    with pytest.raises(stripe.InvalidRequestError) as unconfirmed:
        stripe_client.v1.payment_intents.create(
            params={"amount": 1800, "currency": "usd", "off_session": True}
        )
    assert unconfirmed.value.param == "off_session"


def test_authenticated_card_then_declined_for_funds(stripe_client: stripe.StripeClient) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1800,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    after = authenticate(stripe_client, pi.id)
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["decline_code"] == "insufficient_funds"


def test_expand_latest_charge_and_payment_method(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2100,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_jcb",
            "confirm": True,
            "expand": ["latest_charge", "payment_method", "customer"],
        }
    )
    assert pi.latest_charge.object == "charge"
    assert pi.latest_charge.amount == 2100
    assert pi.payment_method.card.brand == "jcb"
    assert pi.customer.id == customer
    listed = stripe_client.v1.charges.list(
        params={"customer": customer, "expand": ["data.payment_intent"]}
    )
    assert listed.data[0].payment_intent.id == pi.id


def test_ach_debit_on_no_test_clock_settles_in_wall_time(
    stripe_client: stripe.StripeClient, sandbox_server: Any, webhook_receiver: Any
) -> None:
    """As in test mode: a script that only waits for the webhook sees the debit succeed."""
    stripe_client.raw_request(
        "post", "/v1/test_helpers/sandbox/payments/settings", ach_settle_seconds=1
    )
    webhook_receiver.register(sandbox_server)
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method_types": ["us_bank_account"],
            "payment_method": "pm_usBankAccount_success",
            "confirm": True,
        }
    )
    assert pi.status == "processing"
    deadline = time.monotonic() + 30  # a deadline for the wait, not a timing assertion
    while "payment_intent.succeeded" not in webhook_receiver.event_types():
        assert time.monotonic() < deadline, webhook_receiver.event_types()
        time.sleep(0.1)  # no request to the sandbox meanwhile: its clock fires on its own
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_ach_debit_on_a_test_clock_settles_after_four_business_days(
    stripe_client: stripe.StripeClient,
) -> None:
    # Friday 2026-01-16 12:00 UTC: four business days later is Thursday 2026-01-22.
    friday = 1_768_564_800
    clock = stripe_client.v1.test_helpers.test_clocks.create(params={"frozen_time": friday})
    customer = stripe_client.v1.customers.create(params={"test_clock": clock.id}).id
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer,
            "payment_method_types": ["us_bank_account"],
            "payment_method": "pm_usBankAccount_success",
            "confirm": True,
        }
    )
    assert pi.status == "processing"
    day = 86_400
    stripe_client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": friday + 6 * day - 60}
    )
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "processing"
    stripe_client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": friday + 6 * day}
    )
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
