"""Checkout Sessions in the sandbox: the API, the hosted page (over plain HTTP), the test
helper that completes a session, and the events Stripe sends."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.routing import Mount

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState
from tests.sandbox.billing_support import (
    BILLING_PREFIXES,
    DAY,
    complete_checkout,
    event_types,
    helper,
    last_event_id,
    make_catalog,
)
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import SandboxServer, WebhookReceiver

SUCCESS = "https://app.example/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "https://app.example/billing/cancel"


def _subscription_session(
    client: stripe.StripeClient, price: str, **extra: object
) -> stripe.checkout.Session:
    params: dict[str, object] = {
        "mode": "subscription",
        "line_items": [{"price": price, "quantity": 1}],
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        **extra,
    }
    return client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]


def test_subscription_checkout_paid_on_the_hosted_page(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    client = stripe_client
    _, secret = webhook_receiver.register(sandbox_server)
    catalog = make_catalog(client)
    session = _subscription_session(
        client,
        catalog.monthly,
        customer_email="ada@example.com",
        client_reference_id="user_42",
        metadata={"plan": "premium"},
        subscription_data={"metadata": {"account": "42"}},
    )
    assert session.url.startswith(f"{sandbox_server.url}/checkout/pay/cs_test_")
    assert (session.status, session.payment_status, session.amount_total) == (
        "open",
        "unpaid",
        2000,
    )
    assert_stripe_shape(session, "checkout.session")
    mark = last_event_id(client)

    page = httpx.get(session.url)
    assert page.status_code == 200
    assert "4242 4242 4242 4242" in page.text and "$20.00" in page.text
    assert CANCEL in page.text
    paid = httpx.post(session.url, data={"payment_method": "pm_card_visa", "action": "pay"})

    assert paid.status_code == 303
    assert paid.headers["location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert session.client_reference_id == "user_42"
    assert session.metadata.to_dict() == {"plan": "premium"}
    assert session.customer_details.email == "ada@example.com"
    assert session.url is None
    customer = client.v1.customers.retrieve(str(session.customer))
    assert customer.email == "ada@example.com"
    sub = client.v1.subscriptions.retrieve(str(session.subscription))
    assert sub.status == "active"
    assert sub.metadata.to_dict() == {"account": "42"}
    assert session.invoice == sub.latest_invoice
    pm = client.v1.payment_methods.retrieve(str(sub.default_payment_method))
    assert (pm.customer, pm.card.last4) == (customer.id, "4242")

    assert event_types(client, since=mark) == [
        "customer.created",
        "payment_method.attached",
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
        "customer.subscription.updated",
        "checkout.session.completed",
    ]
    created = client.v1.events.list(params={"type": "customer.subscription.created"}).data[0]
    assert created.data.object["status"] == "incomplete"

    sandbox_server.wait_for_webhooks()
    delivered = {}
    for delivery in webhook_receiver.deliveries:
        event = stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], secret
        )
        delivered[event.type] = event
    assert {"checkout.session.completed", "customer.subscription.created", "invoice.paid"} <= set(
        delivered
    )
    assert delivered["checkout.session.completed"].data.object["subscription"] == sub.id
    tampered = webhook_receiver.deliveries[0].body.replace('"livemode": false', '"livemode": true')
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            tampered, webhook_receiver.deliveries[0].headers["Stripe-Signature"], secret
        )


def test_helper_completes_without_a_browser(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(client, catalog.monthly)

    completed = complete_checkout(client, session.id, email="bob@example.com")

    assert (completed.status, completed.payment_status) == ("complete", "paid")
    sub = client.v1.subscriptions.retrieve(completed.subscription)
    assert sub.status == "active"
    with pytest.raises(stripe.InvalidRequestError):
        complete_checkout(client, session.id)
    page = httpx.get(session.url)
    assert page.status_code == 200 and "complete" in page.text


def test_trial_checkout_is_announced_once_as_trialing(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(
        client, catalog.monthly, subscription_data={"trial_period_days": 7}
    )
    assert session.amount_total == 0
    mark = last_event_id(client)

    completed = complete_checkout(client, session.id, email="t@example.com")

    assert completed.payment_status == "no_payment_required"
    assert client.v1.subscriptions.retrieve(completed.subscription).status == "trialing"
    subscription_events = [
        t for t in event_types(client, since=mark) if t.startswith("customer.subscription.")
    ]
    assert subscription_events == ["customer.subscription.created"]


def test_declined_card_keeps_the_session_open(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(client, catalog.monthly, customer_email="d@example.com")

    with pytest.raises(stripe.CardError) as declined:
        complete_checkout(client, session.id, payment_method="pm_card_chargeCustomerFail")
    assert declined.value.code == "card_declined"
    page = httpx.post(session.url, data={"payment_method": "pm_card_chargeDeclined"})
    assert page.status_code == 402 and "declined" in page.text

    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []
    completed = complete_checkout(client, session.id)
    assert completed.status == "complete"
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == 1
    assert len(client.v1.customers.list().data) == 1


def test_three_d_secure_on_the_hosted_page(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(client, catalog.monthly, customer_email="s@example.com")

    with httpx.Client() as browser:
        challenge = browser.post(
            session.url, data={"payment_method": "pm_card_authenticationRequired"}
        )
        assert challenge.status_code == 303
        assert challenge.headers["location"].endswith(f"/checkout/pay/{session.id}/authenticate")
        page = browser.get(challenge.headers["location"])
        assert "Complete authentication" in page.text
        done = browser.post(challenge.headers["location"], data={"outcome": "complete"})

    assert done.headers["location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert client.v1.subscriptions.retrieve(str(session.subscription)).status == "active"


def test_three_d_secure_through_the_test_helpers(stripe_client: stripe.StripeClient) -> None:
    from tests.sandbox.payments_support import authenticate

    client = stripe_client
    catalog = make_catalog(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 1500,
                        "product_data": {"name": "Credits"},
                    },
                    "quantity": 2,
                }
            ],
            "success_url": SUCCESS,
        }
    )
    assert catalog.product

    with pytest.raises(stripe.CardError) as needs_action:
        complete_checkout(
            client,
            session.id,
            payment_method="pm_card_authenticationRequired",
            email="p@example.com",
        )
    assert needs_action.value.code == "authentication_required"
    intent_id = needs_action.value.json_body["error"]["payment_intent"]["id"]

    authenticate(client, intent_id)

    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status, session.payment_intent) == (
        "complete",
        "paid",
        intent_id,
    )


def test_payment_mode_with_price_data_and_intent_metadata(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": 999,
                        "product_data": {"name": "100 credits"},
                    },
                    "quantity": 3,
                }
            ],
            "payment_intent_data": {"metadata": {"credits": "300"}},
            "customer_creation": "always",
            "success_url": SUCCESS,
            "expand": ["line_items"],
        }
    )
    assert session.amount_total == 2997
    assert session.line_items.data[0].description == "100 credits"
    assert_stripe_shape(session.line_items.data[0], "item")
    mark = last_event_id(client)

    completed = complete_checkout(client, session.id, email="buyer@example.com")

    assert (completed.status, completed.payment_status) == ("complete", "paid")
    intent = client.v1.payment_intents.retrieve(completed.payment_intent)
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 2997, "eur")
    assert intent.metadata.to_dict() == {"credits": "300"}
    assert intent.customer == completed.customer
    assert event_types(client, since=mark)[-1] == "checkout.session.completed"
    listed = client.v1.checkout.sessions.line_items.list(session.id)
    assert [item.quantity for item in listed.data] == [3]


def test_payment_mode_without_customer_creation_makes_no_customer(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 500,
                        "product_data": {"name": "Tip"},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": SUCCESS,
        }
    )
    completed = complete_checkout(client, session.id, email="guest@example.com")
    assert completed.customer is None
    assert completed.customer_details.email == "guest@example.com"
    assert client.v1.customers.list().data == []


def test_bank_debit_completes_unpaid_then_succeeds_asynchronously(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 5000,
                        "product_data": {"name": "Invoice"},
                    },
                    "quantity": 1,
                }
            ],
            "payment_method_types": ["card", "us_bank_account"],
            "success_url": SUCCESS,
        }
    )
    failing = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 5000,
                        "product_data": {"name": "Invoice"},
                    },
                    "quantity": 1,
                }
            ],
            "payment_method_types": ["us_bank_account"],
            "success_url": SUCCESS,
        }
    )
    page = httpx.get(session.url)
    assert "000123456789" in page.text

    completed = complete_checkout(
        client, session.id, payment_method="pm_usBankAccount_success", email="ach@example.com"
    )
    complete_checkout(
        client,
        failing.id,
        payment_method="pm_usBankAccount_insufficientFunds",
        email="f@example.com",
    )
    assert (completed.status, completed.payment_status) == ("complete", "unpaid")
    mark = last_event_id(client)

    helper(client, "post", "/v1/test_helpers/sandbox/clock/advance", seconds=5 * DAY)

    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    assert client.v1.checkout.sessions.retrieve(failing.id).payment_status == "unpaid"
    types = event_types(client, since=mark, prefixes=BILLING_PREFIXES)
    assert sorted(types) == [
        "checkout.session.async_payment_failed",
        "checkout.session.async_payment_succeeded",
    ]


def test_setup_mode_saves_a_card_for_an_existing_customer(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    customer = client.v1.customers.create(params={"email": "saver@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer.id,
            "currency": "usd",
            "success_url": SUCCESS,
            "setup_intent_data": {"metadata": {"purpose": "autopay"}},
        }
    )
    assert (session.payment_status, session.amount_total) == ("no_payment_required", None)

    completed = complete_checkout(client, session.id)

    assert completed.status == "complete"
    setup = client.v1.setup_intents.retrieve(completed.setup_intent)
    assert setup.status == "succeeded"
    assert client.v1.payment_methods.retrieve(str(setup.payment_method)).customer == customer.id


def test_promotion_codes_and_discounts(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    coupon = client.v1.coupons.create(params={"percent_off": 50, "duration": "once"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "HALF"}
    )
    allowed = _subscription_session(client, catalog.monthly, allow_promotion_codes=True)
    page = httpx.get(allowed.url)
    assert 'name="promotion_code"' in page.text
    applied = httpx.post(
        allowed.url, data={"promotion_code": "half", "action": "apply_code", "email": "a@b.co"}
    )
    assert "$10.00" in applied.text
    assert client.v1.checkout.sessions.retrieve(allowed.id).amount_total == 1000

    completed = complete_checkout(client, allowed.id, email="a@b.co")

    invoice = client.v1.invoices.retrieve(str(completed.invoice))
    assert (invoice.subtotal, invoice.total, invoice.amount_paid) == (2000, 1000, 1000)
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert completed.total_details.amount_discount == 1000

    plain = _subscription_session(client, catalog.monthly)
    with pytest.raises(stripe.InvalidRequestError):
        complete_checkout(client, plain.id, promotion_code="HALF", email="c@d.co")
    preset = _subscription_session(client, catalog.monthly, discounts=[{"coupon": coupon.id}])
    assert preset.amount_total == 1000


def test_expire_and_the_expiry_timer(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(client, catalog.monthly)

    expired = client.v1.checkout.sessions.expire(session.id)

    assert (expired.status, expired.url) == ("expired", None)
    assert client.v1.events.list().data[0].type == "checkout.session.expired"
    assert httpx.get(session.url).status_code == 410
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)

    later = _subscription_session(client, catalog.monthly)
    helper(client, "post", "/v1/test_helpers/sandbox/clock/advance", seconds=DAY + 60)
    assert client.v1.checkout.sessions.retrieve(later.id).status == "expired"
    assert [s.id for s in client.v1.checkout.sessions.list(params={"status": "expired"}).data] == [
        later.id,
        session.id,
    ]


def test_refusals(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    one_time = client.v1.prices.create(
        params={"product": catalog.product, "currency": "usd", "unit_amount": 300}
    )
    cases: list[tuple[dict[str, object], str | None]] = [
        (
            {"mode": "payment", "line_items": [{"price": catalog.monthly, "quantity": 1}]},
            "line_items[0][price]",
        ),
        (
            {"mode": "subscription", "line_items": [{"price": one_time.id, "quantity": 1}]},
            "line_items",
        ),
        ({"line_items": [{"price": catalog.monthly, "quantity": 1}]}, "mode"),
        (
            {"mode": "subscription", "line_items": [{"price": catalog.monthly}]},
            "line_items[0][quantity]",
        ),
        (
            {
                "mode": "subscription",
                "line_items": [{"price": catalog.monthly, "quantity": 1}],
                "customer": "cus_nope",
            },
            "customer",
        ),
        (
            {
                "mode": "subscription",
                "line_items": [{"price": catalog.monthly, "quantity": 1}],
                "succes_url": "https://x",
            },
            "succes_url",
        ),
    ]
    for params, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
        assert refused.value.param == param, params
        assert refused.value.http_status in (400, 404)


async def test_url_carries_the_mount_prefix() -> None:
    """Mounted under billfold (`/stripe-sandbox`), links keep the prefix and the host."""
    state = SandboxState()
    outer = Starlette(routes=[Mount("/stripe-sandbox", app=create_sandbox_app(state))])
    transport = httpx.ASGITransport(app=outer)

    if True:
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
            auth = {"Authorization": "Bearer sk_test_mounted"}
            product = await http.post(
                "/stripe-sandbox/v1/products", data={"name": "P"}, headers=auth
            )
            price = await http.post(
                "/stripe-sandbox/v1/prices",
                data={"product": product.json()["id"], "currency": "usd", "unit_amount": "100"},
                headers=auth,
            )
            created = await http.post(
                "/stripe-sandbox/v1/checkout/sessions",
                data={
                    "mode": "payment",
                    "line_items[0][price]": price.json()["id"],
                    "line_items[0][quantity]": "1",
                    "success_url": SUCCESS,
                },
                headers=auth,
            )
            url = created.json()["url"]
            assert url.startswith("http://billing.test/stripe-sandbox/checkout/pay/cs_test_")
            page = await http.get(url)
            assert page.status_code == 200
            assert 'action="http://billing.test/stripe-sandbox/checkout/pay/' in page.text
            paid = await http.post(url, data={"payment_method": "pm_card_visa", "email": "m@x.co"})
            target = urlparse(paid.headers["location"])
            session_id = parse_qs(target.query)["session_id"][0]
            assert session_id == created.json()["id"]
            retrieved = await http.get(
                f"/stripe-sandbox/v1/checkout/sessions/{session_id}", headers=auth
            )
            assert json.loads(retrieved.text)["status"] == "complete"


def test_free_trial_without_a_payment_method(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(
        client,
        catalog.monthly,
        subscription_data={
            "trial_period_days": 14,
            "trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
        },
        payment_method_collection="if_required",
        customer_email="free@example.com",
    )
    page = httpx.get(session.url)
    assert "No payment method is needed today" in page.text

    paid = httpx.post(session.url, data={"action": "pay"})

    assert paid.status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "no_payment_required")
    sub = client.v1.subscriptions.retrieve(str(session.subscription))
    assert (sub.status, sub.default_payment_method) == ("trialing", None)
    assert client.v1.payment_methods.list(params={"customer": str(session.customer)}).data == []

    helper(client, "post", "/v1/test_helpers/sandbox/clock/advance", seconds=15 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", sub.trial_end)
    assert client.v1.invoices.list(params={"subscription": sub.id}).data[0].total == 0


def test_subscription_paid_by_bank_debit(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(
        client, catalog.monthly, payment_method_types=["us_bank_account"]
    )

    completed = complete_checkout(
        client, session.id, payment_method="pm_usBankAccount_success", email="ach@example.com"
    )

    assert (completed.status, completed.payment_status) == ("complete", "unpaid")
    sub = client.v1.subscriptions.retrieve(completed.subscription)
    assert sub.status == "active"  # active while the first debit settles
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).status == "open"
    mark = last_event_id(client)

    helper(client, "post", "/v1/test_helpers/sandbox/clock/advance", seconds=5 * DAY)

    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).status == "paid"
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    types = event_types(client, since=mark, prefixes=BILLING_PREFIXES)
    assert types.index("invoice.paid") < types.index("checkout.session.async_payment_succeeded")


def test_promotion_code_restrictions(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    coupon = client.v1.coupons.create(params={"amount_off": 500, "currency": "usd"})
    client.v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "BIGORDER",
            "restrictions": {"minimum_amount": 3000, "minimum_amount_currency": "usd"},
        }
    )
    client.v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "WELCOME",
            "restrictions": {"first_time_transaction": True},
        }
    )
    small = _subscription_session(client, catalog.monthly, allow_promotion_codes=True)
    refused = httpx.post(small.url, data={"promotion_code": "BIGORDER", "action": "apply_code"})
    assert "minimum amount" in refused.text
    big = _subscription_session(client, catalog.monthly_plus, allow_promotion_codes=True)
    assert (
        complete_checkout(client, big.id, promotion_code="BIGORDER", email="b@x.co").amount_total
        == 4500
    )

    customer = client.v1.checkout.sessions.retrieve(big.id).customer
    returning = _subscription_session(
        client, catalog.yearly, allow_promotion_codes=True, customer=customer
    )
    with pytest.raises(stripe.InvalidRequestError) as second_time:
        complete_checkout(client, returning.id, promotion_code="WELCOME")
    assert "first-time" in str(second_time.value.user_message)
    newcomer = _subscription_session(client, catalog.yearly, allow_promotion_codes=True)
    assert (
        complete_checkout(
            client, newcomer.id, promotion_code="welcome", email="n@x.co"
        ).amount_total
        == 19500
    )


def test_checkout_with_a_billing_cycle_anchor_charges_the_prorated_first_period(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    anchor = int(helper(client, "get", "/v1/test_helpers/sandbox/clock").now) + 10 * DAY
    session = _subscription_session(
        client, catalog.monthly, subscription_data={"billing_cycle_anchor": anchor}
    )
    assert 0 < session.amount_total < 2000

    completed = complete_checkout(client, session.id, email="anchor@example.com")

    sub = client.v1.subscriptions.retrieve(completed.subscription)
    assert (sub.billing_cycle_anchor, sub["items"].data[0].current_period_end) == (anchor, anchor)
    charged = client.v1.invoices.retrieve(str(sub.latest_invoice)).total
    assert abs(charged - session.amount_total) <= 1  # a second may pass on the sandbox clock


def test_payment_mode_invoice_creation_records_a_paid_invoice(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "once"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 2500,
                        "product_data": {"name": "500 credits"},
                    },
                    "quantity": 2,
                }
            ],
            "discounts": [{"coupon": coupon.id}],
            "invoice_creation": {
                "enabled": True,
                "invoice_data": {"description": "Credits", "metadata": {"order": "42"}},
            },
            "success_url": SUCCESS,
        }
    )
    assert session.amount_total == 4500

    completed = complete_checkout(client, session.id, email="receipt@example.com")

    assert completed.customer is not None  # an invoice needs a customer
    invoice = client.v1.invoices.retrieve(str(completed.invoice), params={"expand": ["payments"]})
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", 4500, 4500)
    assert (invoice.billing_reason, invoice.description) == ("manual", "Credits")
    assert invoice.metadata.to_dict() == {"order": "42"}
    assert invoice.payments.data[0].payment.payment_intent == completed.payment_intent
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _subscription_session(
            client, make_catalog(client).monthly, invoice_creation={"enabled": True}
        )
    assert refused.value.param == "invoice_creation"


def test_subscription_bank_debit_that_fails_at_settlement(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    session = _subscription_session(
        client, catalog.monthly, payment_method_types=["us_bank_account"]
    )
    completed = complete_checkout(
        client,
        session.id,
        payment_method="pm_usBankAccount_insufficientFunds",
        email="nsf@example.com",
    )
    assert completed.payment_status == "unpaid"
    mark = last_event_id(client)

    helper(client, "post", "/v1/test_helpers/sandbox/clock/advance", seconds=5 * DAY)

    sub = client.v1.subscriptions.retrieve(completed.subscription)
    assert sub.status == "past_due"
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).status == "open"
    types = event_types(client, since=mark, prefixes=BILLING_PREFIXES)
    assert "invoice.payment_failed" in types
    assert "checkout.session.async_payment_failed" in types
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "unpaid"
