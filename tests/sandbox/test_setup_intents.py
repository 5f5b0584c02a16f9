"""SetupIntents through the official SDK: cards (declines, 3-D Secure) and US bank accounts
verified with Stripe's test microdeposit values."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.payments_support import (
    BANK_ACCOUNT,
    advance_sandbox_clock,
    authenticate,
    bank_setup,
    last_event_id,
    payment_events,
)
from tests.sandbox.shapes import assert_stripe_shape


def _customer(client: stripe.StripeClient) -> str:
    return str(client.v1.customers.create(params={"email": "saver@example.com"}).id)


def test_card_setup_attaches_the_payment_method(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    si = stripe_client.v1.setup_intents.create(
        params={"customer": customer, "payment_method_types": ["card"], "usage": "off_session"}
    )
    assert si.status == "requires_payment_method"
    assert si.client_secret.startswith(si.id + "_secret_")
    assert_stripe_shape(si, "setup_intent")
    confirmed = stripe_client.v1.setup_intents.confirm(
        si.id, params={"payment_method": "pm_card_visa"}
    )
    assert confirmed.status == "succeeded"
    pm = stripe_client.v1.payment_methods.retrieve(confirmed.payment_method)
    assert pm.customer == customer
    assert payment_events(stripe_client) == [
        "setup_intent.created",
        "payment_method.attached",
        "setup_intent.succeeded",
    ]
    assert [s.id for s in stripe_client.v1.setup_intents.list({"customer": customer}).data] == [
        si.id
    ]


def test_declined_card_fails_setup_with_card_error(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.setup_intents.create(
            params={
                "customer": customer,
                "payment_method": "pm_card_chargeDeclined",
                "payment_method_types": ["card"],
                "confirm": True,
            }
        )
    assert info.value.code == "card_declined"
    assert info.value.error.decline_code == "generic_decline"
    failed = info.value.error.setup_intent
    assert failed.status == "requires_payment_method"
    si = stripe_client.v1.setup_intents.retrieve(failed.id)
    assert si.last_setup_error.code == "card_declined"
    assert payment_events(stripe_client) == ["setup_intent.created", "setup_intent.setup_failed"]
    # 4000000000000341 sets up fine (its charges fail later).
    ok = stripe_client.v1.setup_intents.confirm(
        si.id, params={"payment_method": "pm_card_chargeCustomerFail"}
    )
    assert ok.status == "succeeded"


def test_three_d_secure_setup(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    si = stripe_client.v1.setup_intents.create(
        params={
            "customer": customer,
            "payment_method": "pm_card_threeDSecure2Required",
            "payment_method_types": ["card"],
            "confirm": True,
            "return_url": "https://app.example.com/after",
        }
    )
    assert si.status == "requires_action"
    assert si.next_action.type == "redirect_to_url"
    assert payment_events(stripe_client)[-1] == "setup_intent.requires_action"
    failed = authenticate(stripe_client, si.id, "fail")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_setup_error"]["code"] == "setup_intent_authentication_failure"
    retry = stripe_client.v1.setup_intents.confirm(
        si.id, params={"payment_method": "pm_card_authenticationRequired"}
    )
    assert retry.status == "requires_action"
    assert authenticate(stripe_client, si.id)["status"] == "succeeded"


def test_bank_account_verified_with_descriptor_code(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    si_id = bank_setup(stripe_client, customer)
    si = stripe_client.v1.setup_intents.retrieve(si_id)
    action = si.next_action.verify_with_microdeposits
    assert si.next_action.type == "verify_with_microdeposits"
    assert action.microdeposit_type == "descriptor_code"
    assert action.arrival_date > si.created
    assert f"/pages/microdeposits/{si.id}" in action.hosted_verification_url
    pm = stripe_client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.type == "us_bank_account"
    assert pm.customer is None

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.verify_microdeposits(
            si_id, params={"descriptor_code": "SM99ZZ"}
        )
    assert info.value.code == "payment_method_microdeposit_verification_descriptor_code_mismatch"
    assert "9 verification attempts remaining" in str(info.value.user_message)
    mark = last_event_id(stripe_client)
    verified = stripe_client.v1.setup_intents.verify_microdeposits(
        si_id, params={"descriptor_code": "SM11AA"}
    )
    assert verified.status == "succeeded"
    assert payment_events(stripe_client, since=mark) == [
        "payment_method.attached",
        "setup_intent.succeeded",
    ]
    saved = stripe_client.v1.payment_methods.retrieve(si.payment_method)
    assert saved.customer == customer
    assert saved.us_bank_account.last4 == "6789"
    assert saved.us_bank_account.bank_name == "STRIPE TEST BANK"
    # The verified account pays off-session (processing, then settled).
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer,
            "payment_method": saved.id,
            "off_session": True,
            "confirm": True,
        }
    )
    assert pi.status == "processing"
    advance_sandbox_clock(stripe_client, 5 * 86400)
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_bank_account_verified_with_amounts(stripe_client: stripe.StripeClient) -> None:
    si_id = bank_setup(stripe_client, _customer(stripe_client))
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.verify_microdeposits(si_id, params={"amounts": [32]})
    assert info.value.code == "payment_method_microdeposit_verification_amounts_invalid"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.verify_microdeposits(si_id, params={"amounts": [1, 2]})
    assert info.value.code == "payment_method_microdeposit_verification_amounts_mismatch"
    assert "2 verification attempts remaining" in str(info.value.user_message)
    done = stripe_client.v1.setup_intents.verify_microdeposits(si_id, params={"amounts": [32, 45]})
    assert done.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.verify_microdeposits(
            si_id, params={"descriptor_code": "SM11AA"}
        )
    assert info.value.code == "setup_intent_unexpected_state"


def test_too_many_wrong_amounts_fail_the_setup(stripe_client: stripe.StripeClient) -> None:
    si_id = bank_setup(stripe_client, _customer(stripe_client))
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client.v1.setup_intents.verify_microdeposits(si_id, params={"amounts": [1, 2]})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.verify_microdeposits(si_id, params={"amounts": [1, 2]})
    assert info.value.code == "payment_method_microdeposit_verification_attempts_exceeded"
    si = stripe_client.v1.setup_intents.retrieve(si_id)
    assert si.status == "requires_payment_method"
    assert si.last_setup_error.code == "payment_method_microdeposit_verification_attempts_exceeded"
    assert payment_events(stripe_client)[-1] == "setup_intent.setup_failed"


@pytest.mark.parametrize(
    ("values", "code"),
    [
        (
            {"descriptor_code": "SM33CC"},
            "payment_method_microdeposit_verification_attempts_exceeded",
        ),
        ({"amounts": [10, 11]}, "payment_method_microdeposit_verification_attempts_exceeded"),
        ({"descriptor_code": "SM44DD"}, "payment_method_microdeposit_verification_timeout"),
        ({"amounts": [40, 41]}, "payment_method_microdeposit_verification_timeout"),
    ],
)
def test_stripe_test_values_for_failed_verification(
    stripe_client: stripe.StripeClient, values: dict[str, object], code: str
) -> None:
    si_id = bank_setup(stripe_client, _customer(stripe_client))
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.verify_microdeposits(si_id, params=values)  # type: ignore[arg-type]
    assert info.value.code == code
    si = stripe_client.v1.setup_intents.retrieve(si_id)
    assert (si.status, si.last_setup_error.code) == ("requires_payment_method", code)


def test_account_that_cannot_receive_microdeposits_fails_on_arrival(
    stripe_client: stripe.StripeClient,
) -> None:
    si_id = bank_setup(stripe_client, _customer(stripe_client), account="000666666661")
    advance_sandbox_clock(stripe_client, 2 * 86400)
    si = stripe_client.v1.setup_intents.retrieve(si_id)
    assert si.status == "requires_payment_method"
    assert si.last_setup_error.code == "payment_method_microdeposit_failed"


def test_test_bank_token_sets_up_without_microdeposits(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    si = stripe_client.v1.setup_intents.create(
        params={
            "customer": customer,
            "payment_method": "pm_usBankAccount_success",
            "payment_method_types": ["us_bank_account"],
            "confirm": True,
        }
    )
    assert si.status == "succeeded"
    assert stripe_client.v1.payment_methods.retrieve(si.payment_method).customer == customer


def test_cancel_and_unexpected_states(stripe_client: stripe.StripeClient) -> None:
    si = stripe_client.v1.setup_intents.create(params={"payment_method_types": ["card"]})
    canceled = stripe_client.v1.setup_intents.cancel(
        si.id, params={"cancellation_reason": "abandoned"}
    )
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.confirm(si.id, params={"payment_method": "pm_card_visa"})
    assert info.value.code == "setup_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.cancel(si.id)
    assert info.value.code == "setup_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.setup_intents.retrieve("seti_missing")
    assert info.value.http_status == 404
    assert payment_events(stripe_client)[-1] == "setup_intent.canceled"


async def test_async_setup_and_verify(stripe_client: stripe.StripeClient) -> None:
    customer = await stripe_client.v1.customers.create_async(params={"name": "Async"})
    si = await stripe_client.v1.setup_intents.create_async(
        params={
            "customer": customer.id,
            "payment_method_types": ["us_bank_account"],
            "payment_method_data": BANK_ACCOUNT,  # type: ignore[typeddict-item]
            "confirm": True,
        }
    )
    assert si.status == "requires_action"
    done = await stripe_client.v1.setup_intents.verify_microdeposits_async(
        si.id, params={"descriptor_code": "SM11AA"}
    )
    assert done.status == "succeeded"
    methods = await stripe_client.v1.customers.payment_methods.list_async(
        customer.id, params={"type": "us_bank_account"}
    )
    assert [m.id for m in methods.data] == [si.payment_method]
