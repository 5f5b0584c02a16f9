"""The payment engine's internal API (what billing calls), the hosted bank pages, and payment
events delivered as signed webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from billfold_sandbox import payments
from billfold_sandbox.errors import StripeError
from billfold_sandbox.payments import outcomes
from billfold_sandbox.state import SandboxState, StripeObject
from tests.sandbox.payments_support import advance_sandbox_clock, payment_events
from tests.sandbox_fixtures import SandboxServer, WebhookReceiver


@pytest.fixture
def heard() -> Iterator[list[tuple[str, str]]]:
    """Outcomes announced to listeners during the test (intent id, status)."""
    calls: list[tuple[str, str]] = []

    def listener(state: SandboxState, intent: StripeObject) -> None:
        calls.append((str(intent["id"]), str(intent["status"])))

    payments.on_intent_outcome(listener)
    try:
        yield calls
    finally:
        outcomes._listeners.remove(listener)


def _customer(state: SandboxState, client: stripe.StripeClient, default: str | None = None) -> str:
    customer = client.v1.customers.create(params={"email": "engine@example.com"}).id
    if default:
        pm = payments.attach_payment_method(state, default, customer)
        client.v1.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": pm["id"]}}
        )
    return str(customer)


def test_pay_uses_the_default_method_and_emits_api_events(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient, heard: list[Any]
) -> None:
    state = sandbox_server.state
    customer = _customer(state, stripe_client, "pm_card_visa")
    pi = payments.pay(
        state,
        customer=customer,
        amount=2900,
        currency="usd",
        description="Invoice INV-0001",
        metadata={"invoice": "in_test"},
    )
    assert pi["status"] == "succeeded"
    assert pi["metadata"] == {"invoice": "in_test"}
    fetched = stripe_client.v1.payment_intents.retrieve(pi["id"])
    assert fetched.amount_received == 2900
    assert payment_events(stripe_client)[-3:] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    # pay() returns its own outcome: listeners only hear later ones.
    assert heard == []


def test_pay_declines_without_raising_and_retries_the_same_intent(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient
) -> None:
    state = sandbox_server.state
    customer = _customer(state, stripe_client, "pm_card_chargeCustomerFail")
    pi = payments.pay(state, customer=customer, amount=5000, currency="usd", off_session=True)
    assert pi["status"] == "requires_payment_method"
    assert pi["last_payment_error"]["decline_code"] == "generic_decline"
    charge = stripe_client.v1.charges.retrieve(pi["latest_charge"])
    assert charge.status == "failed"
    retried = payments.pay(
        state,
        customer=customer,
        amount=5000,
        currency="usd",
        payment_method="pm_card_visa",
        payment_intent=pi["id"],
    )
    assert retried["id"] == pi["id"]
    assert retried["status"] == "succeeded"
    assert len(stripe_client.v1.charges.list(params={"payment_intent": pi["id"]}).data) == 2


def test_pay_off_session_authentication_required(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient, heard: list[Any]
) -> None:
    state = sandbox_server.state
    customer = _customer(state, stripe_client, "pm_card_authenticationRequired")
    off = payments.pay(state, customer=customer, amount=1000, currency="usd")
    assert off["status"] == "requires_payment_method"
    assert off["last_payment_error"]["code"] == "authentication_required"
    on = payments.pay(state, customer=customer, amount=1000, currency="usd", off_session=False)
    assert on["status"] == "requires_action"
    # The customer completes 3-D Secure later: listeners hear it.
    payments.authenticate(state, on["id"], succeed=True)
    assert heard == [(on["id"], "succeeded")]


def test_pay_without_any_method_leaves_the_intent_waiting(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient
) -> None:
    state = sandbox_server.state
    customer = _customer(state, stripe_client)
    pi = payments.pay(state, customer=customer, amount=1000, currency="usd")
    assert pi["status"] == "requires_payment_method"
    assert pi["last_payment_error"] is None
    canceled = payments.cancel_payment_intent(state, pi["id"])
    assert canceled["status"] == "canceled"
    with pytest.raises(StripeError) as info:
        payments.pay(state, customer="cus_missing", amount=1000, currency="usd")
    assert info.value.status == 404
    with pytest.raises(StripeError) as info:
        payments.pay(state, customer=customer, amount=10, currency="usd")
    assert info.value.code == "amount_too_small"


def test_bank_debit_settlement_is_announced(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient, heard: list[Any]
) -> None:
    state = sandbox_server.state
    customer = _customer(state, stripe_client, "pm_usBankAccount_accountClosed")
    pi = payments.pay(state, customer=customer, amount=12000, currency="usd")
    assert pi["status"] == "processing"
    advance_sandbox_clock(stripe_client, 4 * 86400 + 1)
    assert heard == [(pi["id"], "requires_payment_method")]
    assert pi["last_payment_error"]["code"] == "account_closed"


def test_set_up_and_payment_methods_for_hosted_pages(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient, heard: list[Any]
) -> None:
    state = sandbox_server.state
    customer = _customer(state, stripe_client)
    card = payments.payment_method_from_card(
        state, number="4000002500003155", exp_month=12, exp_year=2034, cvc="123"
    )
    si = payments.set_up(state, customer=customer, payment_method=card["id"])
    assert si["status"] == "requires_action"
    payments.authenticate(state, si["id"], succeed=True)
    assert heard == [(si["id"], "succeeded")]
    assert card["customer"] == customer
    off = payments.pay(
        state, customer=customer, amount=1500, currency="usd", payment_method=card["id"]
    )
    assert off["status"] == "succeeded"

    bank = payments.payment_method_from_bank_account(
        state, routing_number="110000000", account_number="000123456789", name="Jenny Rosen"
    )
    bank_setup = payments.set_up(state, customer=customer, payment_method=bank["id"])
    assert bank_setup["next_action"]["type"] == "verify_with_microdeposits"
    with pytest.raises(StripeError) as info:
        payments.payment_method_from_card(
            state, number="4242424242424241", exp_month=1, exp_year=2034
        )
    assert info.value.code == "incorrect_number"
    with pytest.raises(StripeError) as info:
        payments.attach_payment_method(state, "pm_card_chargeDeclined", customer)
    assert info.value.status == 402
    detached = payments.detach_payment_method(state, card["id"])
    assert detached["customer"] is None


def test_three_d_secure_page_redirects_to_the_return_url(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 4000,
            "currency": "usd",
            "payment_method": "pm_card_threeDSecureRequired",
            "confirm": True,
            "return_url": "https://shop.example.com/done?order=7",
        }
    )
    url = pi.next_action.redirect_to_url.url
    assert url.startswith(sandbox_server.url + "/pages/authenticate/")
    page = httpx.get(url)
    assert page.status_code == 200
    assert "Complete authentication" in page.text
    answer = httpx.post(url, data={"outcome": "succeed"})
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("https://shop.example.com/done?order=7&payment_intent=" + pi.id)
    assert "redirect_status=succeeded" in location
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert "already succeeded" in httpx.get(url).text


def test_microdeposit_page_verifies_a_setup(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient
) -> None:
    si = stripe_client.v1.setup_intents.create(
        params={
            "payment_method_types": ["us_bank_account"],
            "payment_method_data": {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                },
                "billing_details": {"name": "Jenny Rosen"},
            },
            "confirm": True,
        }
    )
    url = si.next_action.verify_with_microdeposits.hosted_verification_url
    assert "SM11AA" in httpx.get(url).text
    wrong = httpx.post(url, data={"descriptor_code": "SM00XX"})
    assert wrong.status_code == 400
    assert "attempts remaining" in wrong.text
    right = httpx.post(url, data={"descriptor_code": "sm11aa"})
    assert right.status_code == 200
    assert stripe_client.v1.setup_intents.retrieve(si.id).status == "succeeded"


def test_payment_events_arrive_as_signed_webhooks(
    sandbox_server: SandboxServer,
    stripe_client: stripe.StripeClient,
    webhook_receiver: WebhookReceiver,
) -> None:
    _, secret = webhook_receiver.register(
        sandbox_server,
        ["payment_intent.created", "charge.failed", "payment_intent.payment_failed"],
    )
    with pytest.raises(stripe.CardError):
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
                "confirm": True,
            }
        )
    sandbox_server.wait_for_webhooks()
    assert webhook_receiver.event_types() == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
    ]
    failed = webhook_receiver.deliveries[-1]
    event = stripe.Webhook.construct_event(failed.body, failed.headers["Stripe-Signature"], secret)
    assert event.data.object.last_payment_error.decline_code == "insufficient_funds"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            failed.body.replace("insufficient_funds", "generic_decline"),
            failed.headers["Stripe-Signature"],
            secret,
        )


def test_processing_debit_settles_after_a_restart(tmp_path: Path) -> None:
    from billfold_sandbox.app import create_sandbox_app

    path = tmp_path / "sandbox.json"
    state = SandboxState(path)
    create_sandbox_app(state)
    with state.lock:
        customer = {"id": "cus_restart", "object": "customer", "test_clock": None}
        state.insert({**customer, "invoice_settings": {"default_payment_method": None}})
        bank = payments.attach_payment_method(state, "pm_usBankAccount_success", "cus_restart")
        pi = payments.pay(
            state,
            customer="cus_restart",
            amount=7000,
            currency="usd",
            payment_method=bank["id"],
        )
    assert pi["status"] == "processing"
    state.save()

    restarted = SandboxState(path)
    create_sandbox_app(restarted)
    assert restarted.get("payment_intent", pi["id"])["status"] == "processing"  # type: ignore[index]
    restarted.advance_sandbox_clock(restarted.now() + 5 * 86400)
    settled = restarted.get("payment_intent", pi["id"])
    assert settled is not None and settled["status"] == "succeeded"
    assert restarted.get("payment_method", bank["id"])["customer"] == "cus_restart"  # type: ignore[index]
