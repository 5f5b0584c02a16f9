"""Errors as Stripe words them: the `code` on type errors (`parameter_invalid_integer`,
`parameter_invalid_empty`), exclusive parameters (`parameters_exclusive`), unknown and missing
parameters, through the official SDK."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import customer_on_clock, make_catalog


def _refusal(call: Any, *args: Any, **params: Any) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call(*args, params=params)
    return caught.value


def test_type_errors_carry_stripes_codes(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
    )
    items = client.v1.subscription_items

    not_integer = _refusal(items.update, sub["items"].data[0].id, quantity="two")
    assert (not_integer.code, not_integer.param) == ("parameter_invalid_integer", "quantity")
    empty = _refusal(items.update, sub["items"].data[0].id, quantity="")
    assert (empty.code, empty.param) == ("parameter_invalid_empty", "quantity")
    assert "cannot be unset" in str(empty.user_message)
    empty_enum = _refusal(client.v1.invoices.list, status="")
    assert (empty_enum.code, empty_enum.param) == ("parameter_invalid_empty", "status")
    empty_bool = _refusal(client.v1.subscriptions.cancel, sub.id, invoice_now="")
    assert (empty_bool.code, empty_bool.param) == ("parameter_invalid_empty", "invoice_now")
    nested = _refusal(
        client.v1.subscriptions.create,
        customer=who.customer,
        items=[{"price": catalog.monthly, "quantity": ""}],
    )
    assert (nested.code, nested.param) == ("parameter_invalid_empty", "items[0][quantity]")

    exclusive = _refusal(
        client.v1.subscriptions.create,
        customer=who.customer,
        items=[{"price": catalog.monthly_plus}],
        trial_end=2_000_000_000,
        trial_period_days=3,
    )
    assert (exclusive.code, exclusive.param) == ("parameters_exclusive", "trial_end")
    unknown = _refusal(client.v1.credit_notes.list, colour="blue")
    assert (unknown.code, unknown.param) == ("parameter_unknown", "colour")
    missing = _refusal(client.v1.subscription_items.create, price=catalog.monthly)
    assert (missing.code, missing.param) == ("parameter_missing", "subscription")


def test_an_empty_value_still_unsets_what_can_be_unset(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    who = customer_on_clock(client)
    customer = client.v1.customers.update(who.customer, params={"metadata": {"a": "1"}})
    customer = client.v1.customers.update(who.customer, params={"metadata": ""})  # type: ignore[typeddict-item]
    assert customer.metadata.to_dict() == {}
    invoice = client.v1.invoices.create(params={"customer": who.customer, "description": "x"})
    invoice = client.v1.invoices.update(invoice.id, params={"description": ""})
    assert invoice.description is None


def test_unmodelled_parameters_are_still_checked(stripe_client: stripe.StripeClient) -> None:
    """Parameters the sandbox does not model (taxes, Connect, rendering) are type-checked."""
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    invoices = client.v1.invoices

    long_descriptor = _refusal(
        invoices.create, customer=who.customer, statement_descriptor="x" * 23
    )
    assert long_descriptor.param == "statement_descriptor"
    fee = _refusal(invoices.create, customer=who.customer, application_fee_amount="lots")
    assert (fee.param, fee.code) == ("application_fee_amount", "parameter_invalid_integer")
    field = _refusal(invoices.create, customer=who.customer, custom_fields=[{"name": "PO"}])
    assert (field.param, field.code) == ("custom_fields[0][value]", "parameter_missing")
    tax = _refusal(
        client.v1.subscriptions.create,
        customer=who.customer,
        items=[{"price": catalog.monthly}],
        automatic_tax={"enabled": "maybe"},
    )
    assert tax.param == "automatic_tax[enabled]"
    # Well-typed, they are accepted (and not modelled).
    invoice = invoices.create(
        params={
            "customer": who.customer,
            "statement_descriptor": "BILLFOLD",
            "custom_fields": [{"name": "PO", "value": "42"}],
            "automatic_tax": {"enabled": False},
        }
    )
    assert invoice.status == "draft"
    assert client.v1.subscriptions.list(params={"customer": who.customer}).data == []
