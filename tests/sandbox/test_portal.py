"""The customer portal: sessions, configurations and the hosted page's actions."""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx
import pytest
import stripe

from tests.sandbox.billing_support import (
    DAY,
    JAN_1_2026,
    advance,
    attach_card,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape

RETURN = "https://app.example/account"


def _act(url: str, **form: str) -> httpx.Response:
    response = httpx.post(url, data=form)
    assert response.status_code == 303, response.text
    return response


def test_portal_page_cancel_renew_switch_and_cards(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    session = client.v1.billing_portal.sessions.create(
        params={"customer": who.customer, "return_url": RETURN}
    )
    assert_stripe_shape(session, "billing_portal.session")
    config = client.v1.billing_portal.configurations.retrieve(str(session.configuration))
    assert config.is_default
    assert_stripe_shape(config, "billing_portal.configuration", nested=("features",))

    page = httpx.get(session.url)
    assert page.status_code == 200
    assert "Premium" in page.text and "$20.00" in page.text and "•••• 4242" in page.text
    assert f'href="{RETURN}"' in page.text
    assert "premium_yearly" not in page.text  # prices are shown by product name and amount
    assert "$200.00 / year" in page.text and "$50.00 / month" in page.text

    done = _act(session.url, action="cancel", subscription=sub.id)
    assert "will end on 01 Feb 2026" in unquote(done.headers["location"])
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.cancel_at_period_end, sub.cancel_at) == (True, JAN_1_2026 + 31 * DAY)
    assert "Renew plan" in httpx.get(session.url).text

    _act(session.url, action="reactivate", subscription=sub.id)
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False

    advance(client, who.clock, JAN_1_2026 + 10 * DAY)
    _act(session.url, action="switch", subscription=sub.id, price=catalog.monthly_plus)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == catalog.monthly_plus
    pending = client.v1.invoice_items.list(params={"customer": who.customer, "pending": True})
    assert len(pending.data) == 2  # the default configuration prorates

    _act(session.url, action="add_pm", card="pm_card_mastercard")
    customer = client.v1.customers.retrieve(who.customer)
    new_default = client.v1.payment_methods.retrieve(
        str(customer.invoice_settings.default_payment_method)
    )
    assert new_default.card.last4 == "4444"
    assert client.v1.subscriptions.retrieve(sub.id).default_payment_method is None
    old = who.payment_method
    assert old is not None
    _act(session.url, action="remove_pm", payment_method=old)
    assert client.v1.payment_methods.retrieve(old).customer is None
    refused = _act(session.url, action="remove_pm", payment_method=new_default.id)
    assert "cannot be removed" in unquote(refused.headers["location"])

    _act(session.url, action="update_customer", email="new@example.com", name="Jenny R")
    customer = client.v1.customers.retrieve(who.customer)
    assert (customer.email, customer.name) == ("new@example.com", "Jenny R")

    bad = _act(session.url, action="switch", subscription=sub.id, price="price_elsewhere")
    assert "not available" in unquote(bad.headers["location"])


def test_configuration_cancel_immediately_and_flow_redirect(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    config = client.v1.billing_portal.configurations.create(
        params={
            "features": {
                "subscription_cancel": {"enabled": True, "mode": "immediately"},
                "subscription_update": {
                    "enabled": True,
                    "default_allowed_updates": ["price"],
                    "products": [
                        {"product": catalog.product, "prices": [catalog.monthly, catalog.yearly]}
                    ],
                },
            },
            "business_profile": {"headline": "Acme billing"},
            "default_return_url": RETURN,
        }
    )
    assert config.features.subscription_cancel.mode == "immediately"
    listed = client.v1.billing_portal.configurations.list(params={"is_default": False})
    assert [c.id for c in listed.data] == [config.id]
    session = client.v1.billing_portal.sessions.create(
        params={
            "customer": who.customer,
            "configuration": config.id,
            "flow_data": {
                "type": "subscription_cancel",
                "subscription_cancel": {"subscription": sub.id},
                "after_completion": {
                    "type": "redirect",
                    "redirect": {"return_url": "https://app.example/bye"},
                },
            },
        }
    )
    assert session.return_url == RETURN
    assert session.flow.type == "subscription_cancel"
    page = httpx.get(session.url).text
    assert "Acme billing" in page and "Cancel now" in page
    assert "$50.00" not in page  # only the configured prices are offered

    done = _act(session.url, action="cancel", subscription=sub.id)

    assert done.headers["location"] == "https://app.example/bye"
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_session_refusals(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    customer = client.v1.customers.create(params={"email": "x@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_missing"})
    assert (missing.value.http_status, missing.value.param) == (404, "customer")
    with pytest.raises(stripe.InvalidRequestError) as no_return:
        client.v1.billing_portal.sessions.create(params={"customer": customer.id})
    assert no_return.value.param == "return_url"
    with pytest.raises(stripe.InvalidRequestError) as other_sub:
        client.v1.billing_portal.sessions.create(
            params={
                "customer": customer.id,
                "return_url": RETURN,
                "flow_data": {
                    "type": "subscription_cancel",
                    "subscription_cancel": {"subscription": "sub_nope"},
                },
            }
        )
    assert other_sub.value.param == "flow_data[subscription_cancel][subscription]"
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": RETURN}
    )
    forged = re.sub(r"_[0-9a-f]{24}$", "_" + "0" * 24, session.url)
    assert httpx.get(forged).status_code == 404
    assert "No current subscription" in httpx.get(session.url).text
    attach_card(client, customer.id, "pm_card_visa")
    assert "•••• 4242" in httpx.get(session.url).text


def test_flow_confirms_a_prepared_plan_change(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    item = sub["items"].data[0].id
    session = client.v1.billing_portal.sessions.create(
        params={
            "customer": who.customer,
            "return_url": RETURN,
            "flow_data": {
                "type": "subscription_update_confirm",
                "subscription_update_confirm": {
                    "subscription": sub.id,
                    "items": [{"id": item, "price": catalog.monthly_plus, "quantity": 2}],
                },
                "after_completion": {
                    "type": "redirect",
                    "redirect": {"return_url": "https://app.example/upgraded"},
                },
            },
        }
    )
    assert "Confirm your new plan" in httpx.get(session.url).text

    done = _act(session.url, action="confirm_update")

    assert done.headers["location"] == "https://app.example/upgraded"
    changed = client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert (changed.id, changed.price.id, changed.quantity) == (item, catalog.monthly_plus, 2)
    with pytest.raises(stripe.InvalidRequestError) as wrong_item:
        client.v1.billing_portal.sessions.create(
            params={
                "customer": who.customer,
                "return_url": RETURN,
                "flow_data": {
                    "type": "subscription_update_confirm",
                    "subscription_update_confirm": {
                        "subscription": sub.id,
                        "items": [{"id": "si_other", "price": catalog.yearly}],
                    },
                },
            }
        )
    assert wrong_item.value.param == "flow_data[subscription_update_confirm][items][0][id]"


def test_hosted_confirmation_message_after_a_flow(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _, who, sub = subscribed(client)
    session = client.v1.billing_portal.sessions.create(
        params={
            "customer": who.customer,
            "return_url": RETURN,
            "flow_data": {
                "type": "subscription_cancel",
                "subscription_cancel": {"subscription": sub.id},
                "after_completion": {
                    "type": "hosted_confirmation",
                    "hosted_confirmation": {"custom_message": "Sorry to see you go."},
                },
            },
        }
    )
    done = _act(session.url, action="cancel", subscription=sub.id)
    assert "Sorry to see you go." in httpx.get(done.headers["location"]).text
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
