"""Stripe's integration guides, each written as the guide shows it (the server's calls with the
official SDK, the customer's steps as the browser or Stripe.js makes them, the webhook handler
verifying signatures) and run unchanged against the sandbox.

Already covered elsewhere, as their guides write them: usage-based billing with meters
(`test_billing_meters.py::test_usage_based_billing_guide`) and a customer balance credit applied
to the next invoice (`test_customer_balance.py::test_a_credit_is_applied_to_the_next_invoice`).
The customer's browser steps that need a page (the hosted Checkout form) are plain HTTP posts of
the page's own fields; Stripe.js's calls are the API calls it makes with the publishable key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import stripe

from tests.sandbox.billing_support import DAY, HOUR, JAN_1_2026
from tests.sandbox.payments_support import BANK_ACCOUNT
from tests.sandbox_fixtures import SandboxServer, WebhookReceiver

WAIT = 60.0  # how long a step may take on a loaded machine (never asserted on)
YOUR_DOMAIN = "https://example.com"


class WebhookEndpoint:
    """The guide's webhook endpoint: verifies each delivery's signature and hands the event to
    the guide's handler, once per event."""

    def __init__(self, sandbox: SandboxServer, receiver: WebhookReceiver) -> None:
        self.sandbox, self.receiver = sandbox, receiver
        _, self.secret = receiver.register(sandbox)
        self.handled: list[stripe.Event] = []
        self._seen: set[str] = set()

    def process(self, handler: Callable[[stripe.Event], None]) -> list[str]:
        """Handle every delivery not handled yet; the types handled so far."""
        for delivery in list(self.receiver.deliveries):
            event = stripe.Webhook.construct_event(
                delivery.body, delivery.headers["Stripe-Signature"], self.secret
            )
            if event.id in self._seen:
                continue
            self._seen.add(event.id)
            self.handled.append(event)
            handler(event)
        return [e.type for e in self.handled]

    def wait_for(self, event_type: str, handler: Callable[[stripe.Event], None]) -> None:
        """Handle deliveries until an event of `event_type` arrives (as a server would)."""
        deadline = time.monotonic() + WAIT
        while event_type not in self.process(handler):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event_type} delivered; got {self.process(handler)}")
            time.sleep(0.05)


def _publishable(sandbox: SandboxServer) -> stripe.StripeClient:
    """What Stripe.js calls the API with: the publishable key."""
    return stripe.StripeClient(
        "pk_test_sandbox_guides", base_addresses={"api": sandbox.url}, max_network_retries=0
    )


def _bank_debits_settle_soon(client: stripe.StripeClient) -> None:
    """The sandbox's configuration, not the guide's: bank debits off a test clock answer after
    a second of wall time, as in test mode (the test suite's default is days, so that other
    tests see them processing)."""
    client.raw_request("post", "/v1/test_helpers/sandbox/payments/settings", ach_settle_seconds=1)


def _authenticate_in_the_browser(next_action: Any, return_url: str) -> dict[str, list[str]]:
    """The customer on the 3-D Secure page `redirect_to_url.url`: completes the challenge and is
    sent back to the return URL; the query it comes back with."""
    assert next_action.type == "redirect_to_url"
    url = next_action.redirect_to_url.url
    assert httpx.get(url).status_code == 200
    done = httpx.post(url, data={"outcome": "succeed"})
    assert done.status_code == 303, done.text
    back = done.headers["location"]
    assert back.startswith(return_url + "?")
    return parse_qs(urlparse(back).query)


def _choice(page: str, fragment: str) -> str:
    """The value of the page's quick-pick test payment method whose value has `fragment`."""
    values = re.findall(r'name="payment_method"[^>]*value="([^"]+)"', page)
    values += re.findall(r'value="([^"]+)"[^>]*name="payment_method"', page)
    return next(v for v in values if fragment in v)


def _checkout_session(
    client: stripe.StripeClient, payment_method_types: list[str] | None = None
) -> stripe.checkout.Session:
    params: dict[str, Any] = {
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "product_data": {"name": "T-shirt"},
                    "unit_amount": 2000,
                },
                "quantity": 1,
            }
        ],
        "mode": "payment",
        "success_url": YOUR_DOMAIN + "/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": YOUR_DOMAIN + "/cancel",
    }
    if payment_method_types:
        params["payment_method_types"] = payment_method_types
    return client.v1.checkout.sessions.create(params=params)


class Fulfillment:
    """The "Fulfill orders" handler: `fulfill_checkout(session_id)` from the webhook, idempotent,
    fulfilling only a session whose payment is no longer `unpaid`."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client
        self.orders: dict[str, list[tuple[str, int, int]]] = {}
        self.failed: list[str] = []

    def fulfill_checkout(self, session_id: str) -> None:
        checkout_session = self.client.v1.checkout.sessions.retrieve(
            session_id, params={"expand": ["line_items"]}
        )
        if session_id in self.orders:
            return
        if checkout_session.payment_status != "unpaid":
            self.orders[session_id] = [
                (item.description, int(item.quantity or 0), item.amount_total)
                for item in checkout_session.line_items.data
            ]

    def handle(self, event: stripe.Event) -> None:
        if event.type in (
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
        ):
            self.fulfill_checkout(event.data.object["id"])
        elif event.type == "checkout.session.async_payment_failed":
            self.failed.append(event.data.object["id"])


def test_checkout_payment_with_a_card(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Guide: "Accept a payment" with a Stripe-hosted Checkout page (payment mode), and "Fulfill
    orders": the server creates the session and redirects to its URL, the customer types a
    test card on the page, the `checkout.session.completed` webhook fulfills the line items."""
    endpoint = WebhookEndpoint(sandbox_server, webhook_receiver)
    fulfillment = Fulfillment(stripe_client)
    session = _checkout_session(stripe_client)
    assert (session.status, session.payment_status, session.amount_total) == (
        "open",
        "unpaid",
        2000,
    )

    # The customer, redirected to session.url (303 from the server), fills Stripe's fields.
    assert httpx.get(session.url).status_code == 200
    submitted = httpx.post(
        session.url,
        data={
            "email": "jenny.rosen@example.com",
            "cardNumber": "4242 4242 4242 4242",
            "cardExpiry": "12 / 34",
            "cardCvc": "123",
            "billingName": "Jenny Rosen",
            "action": "pay",
        },
    )
    assert submitted.status_code == 303
    assert submitted.headers["location"] == f"{YOUR_DOMAIN}/success?session_id={session.id}"

    endpoint.wait_for("checkout.session.completed", fulfillment.handle)
    assert fulfillment.orders == {session.id: [("T-shirt", 1, 2000)]}
    # The success page retrieves the session named in its URL.
    done = stripe_client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent.latest_charge"]}
    )
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.customer_details.email == "jenny.rosen@example.com"
    intent: Any = done.payment_intent
    assert (intent.status, intent.amount_received) == ("succeeded", 2000)
    assert intent.latest_charge.payment_method_details.card.last4 == "4242"
    assert intent.latest_charge.billing_details.name == "Jenny Rosen"
    # A redelivered event fulfills nothing twice.
    fulfillment.handle(endpoint.handled[-1])
    assert list(fulfillment.orders) == [session.id]


def test_checkout_payment_with_an_ach_debit_that_completes_later(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Guide: "Accept an ACH Direct Debit payment" with Checkout, and "Fulfill orders" for
    delayed payment methods: `checkout.session.completed` arrives with `payment_status`
    `unpaid`; the order is fulfilled on `checkout.session.async_payment_succeeded`."""
    _bank_debits_settle_soon(stripe_client)
    endpoint = WebhookEndpoint(sandbox_server, webhook_receiver)
    fulfillment = Fulfillment(stripe_client)
    session = _checkout_session(stripe_client, ["card", "us_bank_account"])

    page = httpx.get(session.url).text
    submitted = httpx.post(
        session.url,
        data={
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "payment_method": _choice(page, "usBankAccount"),
            "action": "pay",
        },
    )
    assert submitted.status_code == 303, submitted.text

    # The debit settles a little later (no test clock): the guide's server just waits for it.
    endpoint.wait_for("checkout.session.async_payment_succeeded", fulfillment.handle)
    types = [e.type for e in endpoint.handled]
    assert types.index("checkout.session.completed") < types.index(
        "checkout.session.async_payment_succeeded"
    )
    completed = next(e for e in endpoint.handled if e.type == "checkout.session.completed")
    assert (completed.data.object["status"], completed.data.object["payment_status"]) == (
        "complete",
        "unpaid",
    )
    assert fulfillment.orders == {session.id: [("T-shirt", 1, 2000)]}
    assert fulfillment.failed == []
    done = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert done.payment_status == "paid"
    settled: Any = stripe_client.v1.payment_intents.retrieve(
        str(done.payment_intent), params={"expand": ["latest_charge"]}
    )
    assert settled.status == "succeeded"
    assert settled.latest_charge.payment_method_details.type == "us_bank_account"


def test_save_a_card_and_charge_it_off_session(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    """Guide: "Save a customer's payment method without making a payment" (a SetupIntent,
    confirmed by Stripe.js), then "Charge the saved payment method later" off session, with
    the guide's error handling: a declined card (4000 0000 0000 0341 attaches, charges fail),
    and a card that needs authentication (4000 0027 6000 3184): `authentication_required`,
    then the customer comes back on session and confirms the PaymentIntent."""
    client, js = stripe_client, _publishable(sandbox_server)

    def save_card(number: str) -> tuple[str, str]:
        customer = client.v1.customers.create(params={"email": f"{number[-4:]}@example.com"})
        setup_intent = client.v1.setup_intents.create(
            params={"customer": customer.id, "automatic_payment_methods": {"enabled": True}}
        )
        # Stripe.js: the card element's details become a PaymentMethod, then confirmCardSetup.
        card = js.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
                "billing_details": {"name": "Jenny Rosen"},
            }
        )
        confirmed = js.v1.setup_intents.confirm(
            setup_intent.id,
            params={
                "client_secret": setup_intent.client_secret,
                "payment_method": card.id,
                "return_url": YOUR_DOMAIN + "/setup-complete",
            },
        )
        if confirmed.status == "requires_action":  # 3-D Secure, done by the customer
            back = _authenticate_in_the_browser(
                confirmed.next_action, YOUR_DOMAIN + "/setup-complete"
            )
            assert back["setup_intent"] == [setup_intent.id]
            assert back["redirect_status"] == ["succeeded"]
        assert client.v1.setup_intents.retrieve(setup_intent.id).status == "succeeded"
        return customer.id, card.id

    def charge_later(customer_id: str) -> stripe.PaymentIntent:
        payment_methods = client.v1.customers.payment_methods.list(
            customer_id, params={"type": "card"}
        )
        return client.v1.payment_intents.create(
            params={
                "amount": 1099,
                "currency": "usd",
                "automatic_payment_methods": {"enabled": True},
                "customer": customer_id,
                "payment_method": payment_methods.data[0].id,
                "return_url": YOUR_DOMAIN + "/order/123/complete",
                "off_session": True,
                "confirm": True,
            }
        )

    customer_id, _ = save_card("4242424242424242")
    assert charge_later(customer_id).status == "succeeded"

    customer_id, _ = save_card("4000000000000341")
    with pytest.raises(stripe.CardError) as declined:
        charge_later(customer_id)
    err = declined.value.error
    assert (err.code, err.decline_code) == ("card_declined", "generic_decline")
    failed = client.v1.payment_intents.retrieve(err.payment_intent["id"])
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == "card_declined"

    customer_id, pm_id = save_card("4000002760003184")
    with pytest.raises(stripe.CardError) as needs_auth:
        charge_later(customer_id)
    err = needs_auth.value.error
    assert err.code == "authentication_required"
    payment_intent_id = err.payment_intent["id"]
    payment_intent = client.v1.payment_intents.retrieve(payment_intent_id)
    assert payment_intent.status == "requires_payment_method"
    assert payment_intent.last_payment_error.payment_method.id == pm_id
    # The customer comes back: Stripe.js confirmCardPayment(client_secret, {payment_method}).
    back = js.v1.payment_intents.confirm(
        payment_intent_id,
        params={
            "client_secret": payment_intent.client_secret,
            "payment_method": pm_id,
            "return_url": YOUR_DOMAIN + "/order/123/complete",
        },
    )
    assert back.status == "requires_action"
    returned = _authenticate_in_the_browser(back.next_action, YOUR_DOMAIN + "/order/123/complete")
    assert returned["payment_intent"] == [payment_intent_id]
    assert returned["redirect_status"] == ["succeeded"]
    paid = client.v1.payment_intents.retrieve(payment_intent_id)
    assert (paid.status, paid.amount_received) == ("succeeded", 1099)


def test_ach_direct_debit_with_microdeposits(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Guide: "Accept an ACH Direct Debit payment" (PaymentIntent, bank details entered by
    hand, verified with microdeposits): collectBankAccountForPayment and
    confirmUsBankAccountPayment leave the intent waiting on microdeposits;
    verifyMicrodepositsForPayment with the descriptor code; `payment_intent.succeeded` later."""
    client, js = stripe_client, _publishable(sandbox_server)
    _bank_debits_settle_soon(client)
    endpoint = WebhookEndpoint(sandbox_server, webhook_receiver)
    customer = client.v1.customers.create(
        params={"email": "jenny.rosen@example.com", "name": "Jenny Rosen"}
    )
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1099,
            "currency": "usd",
            "setup_future_usage": "off_session",
            "customer": customer.id,
            "payment_method_types": ["us_bank_account"],
            "payment_method_options": {
                "us_bank_account": {
                    "financial_connections": {"permissions": ["payment_method", "balances"]}
                }
            },
        }
    )
    assert intent.status == "requires_payment_method"
    # Stripe.js, manual entry: the bank account, then the confirmation with the mandate.
    confirmed = js.v1.payment_intents.confirm(
        intent.id,
        params={
            "client_secret": intent.client_secret,
            "payment_method_data": BANK_ACCOUNT,  # routing and account typed by hand
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "127.0.0.1", "user_agent": "Mozilla/5.0"},
                }
            },
        },
    )
    assert confirmed.status == "requires_action"
    action = confirmed.next_action.verify_with_microdeposits
    assert action.microdeposit_type == "descriptor_code"
    assert action.hosted_verification_url

    verified = js.v1.payment_intents.verify_microdeposits(
        intent.id,
        params={"client_secret": intent.client_secret, "descriptor_code": "SM11AA"},
    )
    assert verified.status == "processing"
    endpoint.wait_for("payment_intent.succeeded", lambda event: None)
    succeeded = [e for e in endpoint.handled if e.type == "payment_intent.succeeded"]
    assert [e.data.object["id"] for e in succeeded] == [intent.id]
    # setup_future_usage saved the verified account on the customer.
    saved = client.v1.customers.payment_methods.list(
        customer.id, params={"type": "us_bank_account"}
    ).data
    assert [pm.us_bank_account.last4 for pm in saved] == ["6789"]


def test_refunds_and_a_dispute(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Guides: "Refund and cancel payments" (a partial refund, then the rest, with
    `charge.refunded`) and "Test disputes" / "Respond to disputes" (the dispute test card, the
    `charge.dispute.created` webhook, evidence submitted with `winning_evidence`: won)."""
    client = stripe_client
    endpoint = WebhookEndpoint(sandbox_server, webhook_receiver)

    def pay(payment_method: str) -> stripe.PaymentIntent:
        return client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "usd",
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "confirm": True,
            }
        )

    intent = pay("pm_card_visa")
    partial = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1500})
    assert (partial.status, partial.amount) == ("succeeded", 1500)
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})
    assert rest.amount == 3500
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.refunded, charge.amount_refunded) == (True, 5000)

    disputes: list[str] = []

    def handle(event: stripe.Event) -> None:
        if event.type == "charge.dispute.created":
            disputes.append(event.data.object["id"])

    disputed = pay("pm_card_createDispute")
    endpoint.wait_for("charge.dispute.created", handle)
    refunded = [e for e in endpoint.handled if e.type == "charge.refunded"]
    assert [e.data.object["amount_refunded"] for e in refunded] == [1500, 5000]
    [dispute_id] = disputes
    with pytest.raises(stripe.InvalidRequestError) as charged_back:  # not refunded as well
        client.v1.refunds.create(params={"payment_intent": disputed.id})
    assert charged_back.value.code == "charge_disputed"
    dispute = client.v1.disputes.retrieve(dispute_id)
    assert (dispute.status, dispute.payment_intent, dispute.amount) == (
        "needs_response",
        disputed.id,
        5000,
    )
    responded = client.v1.disputes.update(
        dispute_id,
        params={"evidence": {"uncategorized_text": "winning_evidence"}, "submit": True},
    )
    assert responded.status == "won"
    endpoint.wait_for("charge.dispute.closed", handle)
    closed = [e for e in endpoint.handled if e.type == "charge.dispute.closed"]
    assert closed[-1].data.object["status"] == "won"


def _customer_on_a_clock(
    client: stripe.StripeClient, unit_amount: int, clock_name: str
) -> tuple[Any, Any, Any]:
    """The test clocks guide's first steps: a clock, a customer on it paying with a card, and
    a monthly price of `unit_amount`."""
    test_clock = client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": JAN_1_2026, "name": clock_name}
    )
    customer = client.v1.customers.create(
        params={
            "email": "jenny.rosen@example.com",
            "test_clock": test_clock.id,
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Gold"},
        }
    )
    return test_clock, customer, price


def test_a_trial_on_a_test_clock(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Guide: "Test subscriptions integrations with test clocks" for a free trial: a clock, a
    customer on it with a card, a subscription with `trial_period_days`; advancing the clock
    sends `customer.subscription.trial_will_end` three days before the end, then the first
    invoice is paid and the subscription is active."""
    client = stripe_client
    endpoint = WebhookEndpoint(sandbox_server, webhook_receiver)
    test_clock, customer, price = _customer_on_a_clock(client, 1500, "Trial")
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 14}
    )
    assert subscription.status == "trialing"
    assert subscription.trial_end == JAN_1_2026 + 14 * DAY

    def advance(to: int) -> None:
        client.v1.test_helpers.test_clocks.advance(test_clock.id, params={"frozen_time": to})
        deadline = time.monotonic() + WAIT  # the guide polls until the clock is ready
        while client.v1.test_helpers.test_clocks.retrieve(test_clock.id).status != "ready":
            assert time.monotonic() < deadline, "the test clock never became ready"
            time.sleep(0.05)

    advance(JAN_1_2026 + 11 * DAY + HOUR)
    endpoint.wait_for("customer.subscription.trial_will_end", lambda event: None)
    assert client.v1.subscriptions.retrieve(subscription.id).status == "trialing"

    advance(JAN_1_2026 + 15 * DAY)
    endpoint.wait_for("invoice.paid", lambda event: None)
    active = client.v1.subscriptions.retrieve(subscription.id)
    assert active.status == "active"
    invoices = client.v1.invoices.list(params={"subscription": subscription.id}).data
    assert [(i.billing_reason, i.amount_paid) for i in invoices] == [
        ("subscription_cycle", 1500),
        ("subscription_create", 0),
    ]


def test_a_customer_balance_credit_on_the_next_invoice(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Guide: "Customer credit balance": a credit (a negative balance transaction) on a
    subscriber's balance is applied to the next invoice finalized for them, the renewal,
    which charges only the rest; the balance's ledger shows the credit used."""
    client = stripe_client
    endpoint = WebhookEndpoint(sandbox_server, webhook_receiver)
    test_clock, customer, price = _customer_on_a_clock(client, 2000, "Credit")
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    credit = client.v1.customers.balance_transactions.create(
        customer.id,
        params={"amount": -500, "currency": "usd", "description": "Service credit"},
    )
    assert (credit.type, credit.ending_balance) == ("adjustment", -500)
    assert client.v1.customers.retrieve(customer.id).balance == -500

    period_end = int(subscription["items"].data[0].current_period_end)
    client.v1.test_helpers.test_clocks.advance(
        test_clock.id, params={"frozen_time": period_end + 2 * HOUR}
    )
    endpoint.wait_for("invoice.paid", lambda event: None)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(subscription.id).latest_invoice)
    )
    assert renewal.billing_reason == "subscription_cycle"
    assert (renewal.total, renewal.amount_due, renewal.amount_paid) == (2000, 1500, 1500)
    assert (renewal.starting_balance, renewal.ending_balance) == (-500, 0)
    assert client.v1.customers.retrieve(customer.id).balance == 0
    ledger = client.v1.customers.balance_transactions.list(customer.id).data
    assert [(t.type, t.amount, t.invoice) for t in ledger] == [
        ("applied_to_invoice", 500, renewal.id),
        ("adjustment", -500, None),
    ]
