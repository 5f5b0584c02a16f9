"""The customer cash balance and its transactions, with the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import event_types
from tests.sandbox.shapes import assert_stripe_shape


def test_cash_balance(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"name": "Jenny Rosen"})
    empty = stripe_client.v1.customers.cash_balance.retrieve(customer.id)
    assert_stripe_shape(empty, "cash_balance")
    assert empty.available is None
    assert empty.settings.reconciliation_mode == "automatic"
    assert empty.settings.using_merchant_default is True

    manual = stripe_client.v1.customers.cash_balance.update(
        customer.id, params={"settings": {"reconciliation_mode": "manual"}}
    )
    assert (manual.settings.reconciliation_mode, manual.settings.using_merchant_default) == (
        "manual",
        False,
    )
    with pytest.raises(stripe.InvalidRequestError) as mode:
        stripe_client.v1.customers.cash_balance.update(
            customer.id,
            params={"settings": {"reconciliation_mode": "sometimes"}},  # type: ignore[typeddict-item]
        )
    assert mode.value.param == "settings[reconciliation_mode]"

    funded = stripe_client.v1.test_helpers.customers.fund_cash_balance(
        customer.id, params={"amount": 5000, "currency": "eur", "reference": "INV-7"}
    )
    assert_stripe_shape(funded, "customer_cash_balance_transaction")
    assert (funded.type, funded.net_amount, funded.ending_balance) == ("funded", 5000, 5000)
    assert funded.funded.bank_transfer.type == "eu_bank_transfer"
    assert funded.funded.bank_transfer.reference == "INV-7"
    stripe_client.v1.test_helpers.customers.fund_cash_balance(
        customer.id, params={"amount": 1500, "currency": "eur"}
    )
    balance = stripe_client.v1.customers.cash_balance.retrieve(customer.id)
    assert balance.available.to_dict() == {"eur": 6500}

    listed = stripe_client.v1.customers.cash_balance_transactions.list(customer.id)
    assert [t.ending_balance for t in listed.data] == [6500, 5000]
    one = stripe_client.v1.customers.cash_balance_transactions.retrieve(customer.id, funded.id)
    assert one.id == funded.id
    other = stripe_client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as elsewhere:
        stripe_client.v1.customers.cash_balance_transactions.retrieve(other.id, funded.id)
    assert elsewhere.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as currency:
        stripe_client.v1.test_helpers.customers.fund_cash_balance(
            customer.id, params={"amount": 100, "currency": "chf"}
        )
    assert currency.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as amount:
        stripe_client.v1.test_helpers.customers.fund_cash_balance(
            customer.id, params={"amount": 0, "currency": "eur"}
        )
    assert amount.value.param == "amount"
    assert (
        event_types(stripe_client, prefixes=("customer_cash_balance_transaction.", "cash_balance."))
        == [
            "customer_cash_balance_transaction.created",
            "cash_balance.funds_available",
        ]
        * 2
    )


def instructions(
    client: stripe.StripeClient, customer: str, transfer: dict[str, Any], currency: str
) -> Any:
    return client.v1.customers.funding_instructions.create(
        customer,
        params={"bank_transfer": transfer, "currency": currency, "funding_type": "bank_transfer"},  # type: ignore[typeddict-item]
    )


def test_funding_instructions(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"name": "Jenny Rosen"})
    us = instructions(stripe_client, customer.id, {"type": "us_bank_transfer"}, "usd")
    assert_stripe_shape(us, "funding_instructions")
    address = us.bank_transfer.financial_addresses[0]
    assert (address.type, address.aba.routing_number) == ("aba", "110000000")
    again = instructions(stripe_client, customer.id, {"type": "us_bank_transfer"}, "usd")
    assert (
        again.bank_transfer.financial_addresses[0].aba.account_number == address.aba.account_number
    )
    eu = instructions(
        stripe_client,
        customer.id,
        {"type": "eu_bank_transfer", "eu_bank_transfer": {"country": "DE"}},
        "eur",
    )
    assert eu.bank_transfer.financial_addresses[0].iban.iban.startswith("DE")
    with pytest.raises(stripe.InvalidRequestError) as mismatch:
        instructions(stripe_client, customer.id, {"type": "us_bank_transfer"}, "eur")
    assert mismatch.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as country:
        instructions(stripe_client, customer.id, {"type": "eu_bank_transfer"}, "eur")
    assert country.value.param == "bank_transfer[eu_bank_transfer][country]"
