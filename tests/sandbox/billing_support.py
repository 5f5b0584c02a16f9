"""Helpers for the billing tests (subscriptions, invoices, Checkout, the portal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

DAY = 86_400
HOUR = 3_600
JAN_1_2026 = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class Catalog:
    product: str
    monthly: str  # 20.00 USD a month
    monthly_plus: str  # 50.00 USD a month
    yearly: str  # 200.00 USD a year


def make_catalog(client: stripe.StripeClient) -> Catalog:
    product = client.v1.products.create(params={"name": "Premium"})

    def price(amount: int, interval: str, lookup_key: str) -> str:
        created = client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": interval},
                "lookup_key": lookup_key,
            }
        )
        return str(created.id)

    return Catalog(
        product=str(product.id),
        monthly=price(2000, "month", "premium_monthly"),
        monthly_plus=price(5000, "month", "premium_plus_monthly"),
        yearly=price(20000, "year", "premium_yearly"),
    )


@dataclass
class ClockedCustomer:
    clock: str
    customer: str
    payment_method: str | None


def customer_on_clock(
    client: stripe.StripeClient,
    *,
    card: str | None = "pm_card_visa",
    start: int = JAN_1_2026,
    email: str = "jenny@example.com",
) -> ClockedCustomer:
    """A customer on a fresh test clock, with `card` attached as the invoice default."""
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = client.v1.customers.create(params={"email": email, "test_clock": clock.id})
    pm_id = None
    if card is not None:
        pm_id = attach_card(client, customer.id, card)
    return ClockedCustomer(str(clock.id), str(customer.id), pm_id)


def subscribed(
    client: stripe.StripeClient, *, price: str = "monthly", **params: Any
) -> tuple[Catalog, ClockedCustomer, Any]:
    """The catalog, a customer on a test clock paying with 4242, and their subscription to
    `price` (a Catalog field), created with `params`."""
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": getattr(catalog, price)}], **params}
    )
    return catalog, who, sub


def attach_card(
    client: stripe.StripeClient, customer: str, card: str, *, default: bool = True
) -> str:
    if card.isdigit():  # a raw test card number, as a person would type it
        created = client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        card = str(created.id)
    pm = client.v1.payment_methods.attach(card, params={"customer": customer})
    if default:
        client.v1.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
    return str(pm.id)


def advance(client: stripe.StripeClient, clock: str, to: int) -> None:
    client.v1.test_helpers.test_clocks.advance(clock, params={"frozen_time": to})


def clock_time(client: stripe.StripeClient, clock: str) -> int:
    return int(client.v1.test_helpers.test_clocks.retrieve(clock).frozen_time)


def events(client: stripe.StripeClient, *, since: str | None = None) -> list[Any]:
    """Every event, oldest first (after event id `since`, if given)."""
    found = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    found.reverse()
    if since is not None:
        ids = [e.id for e in found]
        found = found[ids.index(since) + 1 :]
    return found


def event_types(
    client: stripe.StripeClient, *, since: str | None = None, prefixes: tuple[str, ...] = ()
) -> list[str]:
    return [
        e.type for e in events(client, since=since) if not prefixes or e.type.startswith(prefixes)
    ]


BILLING_PREFIXES = ("customer.subscription.", "invoice.", "invoice_payment.", "checkout.session.")


def last_event_id(client: stripe.StripeClient) -> str:
    return str(client.v1.events.list(params={"limit": 1}).data[0].id)


def helper(client: stripe.StripeClient, method: str, path: str, **params: Any) -> Any:
    """Call one of the sandbox's own test helper routes; the answer as a StripeObject."""
    response = client.raw_request(method, path, **params)
    return client.deserialize(response, api_mode="V1")


def complete_checkout(client: stripe.StripeClient, session_id: str, **params: Any) -> Any:
    """`POST /v1/test_helpers/checkout/sessions/{id}/complete` (the browserless checkout)."""
    return helper(
        client, "post", f"/v1/test_helpers/checkout/sessions/{session_id}/complete", **params
    )


def billing_settings(client: stripe.StripeClient, **settings: Any) -> Any:
    return helper(client, "post", "/v1/test_helpers/billing/settings", **settings)
