"""PaymentMethods through the official SDK: cards from test numbers and test ids, bank
accounts, attach/detach/update with their events, lists by customer and type."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.payments_support import events_about, payment_events
from tests.sandbox.shapes import assert_stripe_shape


def _card(number: str, **extra: object) -> dict[str, object]:
    card: dict[str, object] = {"number": number, "exp_month": 8, "exp_year": 2031, "cvc": "123"}
    card.update(extra)
    return {"type": "card", "card": card}


@pytest.mark.parametrize(
    ("number", "brand", "funding", "last4"),
    [
        ("4242424242424242", "visa", "credit", "4242"),
        ("4000056655665556", "visa", "debit", "5556"),
        ("5555555555554444", "mastercard", "credit", "4444"),
        ("5105105105105100", "mastercard", "prepaid", "5100"),
        ("378282246310005", "amex", "credit", "0005"),
        ("6011111111111117", "discover", "credit", "1117"),
        ("4000002500003155", "visa", "credit", "3155"),
    ],
)
def test_card_details_from_test_numbers(
    stripe_client: stripe.StripeClient, number: str, brand: str, funding: str, last4: str
) -> None:
    pm = stripe_client.v1.payment_methods.create(params=_card(number))  # type: ignore[arg-type]
    assert pm.id.startswith("pm_")
    assert (pm.card.brand, pm.card.funding, pm.card.last4) == (brand, funding, last4)
    assert (pm.card.exp_month, pm.card.exp_year) == (8, 2031)
    assert pm.card.checks.cvc_check == "pass"
    assert len(pm.card.fingerprint) == 16
    assert pm.customer is None
    assert_stripe_shape(pm, "payment_method", nested=("billing_details", "card"))
    again = stripe_client.v1.payment_methods.create(params=_card(number))  # type: ignore[arg-type]
    assert again.card.fingerprint == pm.card.fingerprint
    assert again.id != pm.id


def test_card_number_errors_are_card_errors(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.create(params=_card("4242424242424241"))  # type: ignore[arg-type]
    assert (info.value.code, info.value.param) == ("incorrect_number", "card[number]")
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.create(params=_card("4111111111111111"))  # type: ignore[arg-type]
    assert info.value.error.decline_code == "test_mode_live_card"
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.create(params=_card("4242424242424242", exp_year=2001))  # type: ignore[arg-type]
    assert info.value.code == "invalid_expiry_year"
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.create(params=_card("4242424242424242", exp_month=13))  # type: ignore[arg-type]
    assert info.value.code == "invalid_expiry_month"
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.create(params=_card("4242424242424242", cvc="12x"))  # type: ignore[arg-type]
    assert info.value.code == "invalid_cvc"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.create(params={"type": "card"})
    assert info.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.create(params={"type": "sepa_debit"})
    assert info.value.param == "type"


def test_tokens_and_test_ids_give_fresh_payment_methods(stripe_client: stripe.StripeClient) -> None:
    from_token = stripe_client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_mastercard"}}
    )
    assert from_token.card.brand == "mastercard"
    first = stripe_client.v1.payment_methods.retrieve("pm_card_amex")
    second = stripe_client.v1.payment_methods.retrieve("pm_card_amex")
    assert first.id != second.id
    assert first.card.brand == "amex"
    assert first.card.fingerprint == second.card.fingerprint
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.retrieve("pm_card_doesNotExist")
    assert info.value.http_status == 404
    assert "No such PaymentMethod" in str(info.value.user_message)


def test_test_id_names_one_payment_method_within_a_request(
    stripe_client: stripe.StripeClient,
) -> None:
    # Stripe's documented way to give a new customer a card it can charge.
    customer = stripe_client.v1.customers.create(
        params={
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    attached = stripe_client.v1.customers.payment_methods.list(customer.id).data
    assert len(attached) == 1
    assert attached[0].card.last4 == "4242"
    assert len(stripe_client.v1.payment_methods.list().data) == 1


def test_attach_detach_update_and_list(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "wallet@example.com"}).id
    visa = stripe_client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    assert visa.customer == customer
    master = stripe_client.v1.payment_methods.attach(
        "pm_card_mastercard", params={"customer": customer}
    )
    bank = stripe_client.v1.payment_methods.attach(
        "pm_usBankAccount_success", params={"customer": customer}
    )
    assert bank.type == "us_bank_account"
    assert_stripe_shape(
        bank,
        "payment_method",
        # Stripe sends the details under the method's type: `us_bank_account`, not `card`.
        allow_missing=("card",),
        allow_extra=("us_bank_account",),
    )

    cards = stripe_client.v1.payment_methods.list(params={"customer": customer, "type": "card"})
    assert [pm.id for pm in cards.data] == [master.id, visa.id]
    every = stripe_client.v1.customers.payment_methods.list(customer)
    assert [pm.id for pm in every.data] == [bank.id, master.id, visa.id]
    fetched = stripe_client.v1.customers.payment_methods.retrieve(customer, visa.id)
    assert fetched.id == visa.id

    stripe_client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": visa.id}}
    )
    updated = stripe_client.v1.payment_methods.update(
        visa.id,
        params={
            "billing_details": {"name": "Ada Lovelace", "address": {"postal_code": "94107"}},
            "card": {"exp_month": 3, "exp_year": 2033},
            "metadata": {"nickname": "work"},
        },
    )
    assert updated.billing_details.name == "Ada Lovelace"
    assert updated.billing_details.address.postal_code == "94107"
    assert (updated.card.exp_month, updated.card.exp_year) == (3, 2033)

    detached = stripe_client.v1.payment_methods.detach(visa.id)
    assert detached.customer is None
    assert (
        stripe_client.v1.customers.retrieve(customer).invoice_settings.default_payment_method
        is None
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.detach(visa.id)
    assert info.value.code == "payment_method_unexpected_state"

    types = [e.type for e in events_about(stripe_client, visa.id)]
    assert types == ["payment_method.attached", "payment_method.updated", "payment_method.detached"]
    update_event = events_about(stripe_client, visa.id)[1]
    assert update_event.data.previous_attributes["billing_details"]["name"] is None
    assert payment_events(stripe_client).count("payment_method.attached") == 3


def test_attach_checks_the_card_and_the_owner(stripe_client: stripe.StripeClient) -> None:
    alice = stripe_client.v1.customers.create(params={"name": "Alice"}).id
    bob = stripe_client.v1.customers.create(params={"name": "Bob"}).id
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.attach(
            "pm_card_visa_chargeDeclinedInsufficientFunds", params={"customer": alice}
        )
    assert info.value.error.decline_code == "insufficient_funds"
    pm = stripe_client.v1.payment_methods.attach("pm_card_visa", params={"customer": alice})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.attach(pm.id, params={"customer": bob})
    assert info.value.code == "payment_method_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.attach(pm.id, params={"customer": "cus_missing"})
    assert info.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": bob,
                "payment_method": pm.id,
                "confirm": True,
            }
        )
    assert info.value.param == "payment_method"
    loose = stripe_client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_visa"}}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.update(loose.id, params={"metadata": {"a": "b"}})
    assert info.value.code == "payment_method_unexpected_state"


def test_bank_account_payment_method_from_numbers(stripe_client: stripe.StripeClient) -> None:
    pm = stripe_client.v1.payment_methods.create(
        params={
            "type": "us_bank_account",
            "us_bank_account": {
                "routing_number": "110000000",
                "account_number": "000123456789",
                "account_holder_type": "company",
                "account_type": "savings",
            },
            "billing_details": {"name": "Acme Inc"},
        }
    )
    bank = pm.us_bank_account
    assert (bank.last4, bank.routing_number, bank.account_holder_type, bank.account_type) == (
        "6789",
        "110000000",
        "company",
        "savings",
    )
    customer = stripe_client.v1.customers.create(params={"name": "Acme"}).id
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    assert info.value.code == "payment_method_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.create(
            params={
                "type": "us_bank_account",
                "us_bank_account": {"routing_number": "123456789", "account_number": "0001234"},
                "billing_details": {"name": "Acme Inc"},
            }
        )
    assert info.value.param == "us_bank_account[routing_number]"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.create(
            params={
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                },
            }
        )
    assert info.value.param == "billing_details[name]"


async def test_async_attach_and_list(stripe_client: stripe.StripeClient) -> None:
    customer = await stripe_client.v1.customers.create_async(params={"name": "Async"})
    pm = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_discover", params={"customer": customer.id}
    )
    listed = await stripe_client.v1.payment_methods.list_async(
        params={"customer": customer.id, "type": "card"}
    )
    assert [p.id for p in listed.data] == [pm.id]
    detached = await stripe_client.v1.payment_methods.detach_async(pm.id)
    assert detached.customer is None


def test_payment_method_without_customer_is_used_up_after_one_payment(
    stripe_client: stripe.StripeClient,
) -> None:
    loose = stripe_client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_visa"}}
    )
    paid = stripe_client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "payment_method": loose.id, "confirm": True}
    )
    assert paid.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "usd", "payment_method": loose.id, "confirm": True}
        )
    assert "may not be used again" in str(info.value.user_message)
    customer = stripe_client.v1.customers.create(params={"name": "Late"}).id
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_methods.attach(loose.id, params={"customer": customer})

    # Attached methods are reused freely; a detached one is used up.
    saved = stripe_client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    for _ in range(2):
        again = stripe_client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer,
                "payment_method": saved.id,
                "confirm": True,
            }
        )
        assert again.status == "succeeded"
    stripe_client.v1.payment_methods.detach(saved.id)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_methods.attach(saved.id, params={"customer": customer})
    assert "may not be used again" in str(info.value.user_message)
