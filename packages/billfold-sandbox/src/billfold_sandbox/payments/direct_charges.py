"""The Charges API (`POST /v1/charges`, `/v1/charges/{id}/capture`): a card charged directly, with
no PaymentIntent, as older integrations do (`source=tok_visa`, or a customer's default card).

Same test cards and outcomes as PaymentIntents: a decline is a 402 `card_error` naming the failed
charge; `capture=false` authorizes only, captured later in full or in part (the rest refunded).
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import card_error, invalid_request
from billfold_sandbox.params import apply_metadata
from billfold_sandbox.payments import balance, disputes
from billfold_sandbox.payments.charges import CHARGE, new_charge
from billfold_sandbox.payments.intents import check_amount, check_currency
from billfold_sandbox.payments.methods import (
    PAYMENT_METHOD,
    card_of,
    load_test_payment_method,
    mark_used,
)
from billfold_sandbox.state import SandboxState, StripeObject


def _source(state: SandboxState, source: str | None, customer: str | None) -> StripeObject:
    if source is None:
        found = state.get("customer", customer or "")
        default = None
        if found is not None:
            default = (found.get("invoice_settings") or {}).get(
                "default_payment_method"
            ) or found.get("default_source")
        if not default:
            raise invalid_request(
                "Cannot charge a customer that has no active card",
                param="card",
                code="missing",
            )
        return state.require(PAYMENT_METHOD, str(default), param="source")
    if source.startswith("tok_"):
        made = load_test_payment_method(state, "pm_card_" + source[len("tok_") :])
        if made is None:
            raise invalid_request(
                f"No such token: '{source}'", param="source", code="resource_missing", status=404
            )
        return made
    pm = state.require(PAYMENT_METHOD, source, param="source")
    if customer is not None and pm.get("customer") not in (None, customer):
        raise invalid_request(
            f"Customer {customer} does not have a linked source with ID {source}.",
            param="source",
            code="missing",
        )
    return pm


def create_charge(state: SandboxState, p: dict[str, Any]) -> StripeObject:
    """Charge a card now (or authorize it only, `capture=false`)."""
    currency = check_currency(p["currency"])
    check_amount(p["amount"], currency)
    customer = p.get("customer")
    if customer is not None:
        state.require("customer", customer, param="customer")
    pm = _source(state, p.get("source"), customer)
    if pm["type"] != "card":
        raise invalid_request(
            "The Charges API takes cards only; use a PaymentIntent for bank debits.",
            param="source",
        )
    capture = p.get("capture", True)
    # The fields new_charge reads from an intent; a direct charge has none.
    basis: StripeObject = {
        "id": None,
        "object": "charge_request",
        "amount": p["amount"],
        "currency": currency,
        "customer": customer,
        "description": p.get("description"),
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "receipt_email": p.get("receipt_email"),
        "shipping": p.get("shipping"),
        "statement_descriptor": p.get("statement_descriptor"),
        "statement_descriptor_suffix": p.get("statement_descriptor_suffix"),
    }
    card = card_of(pm)
    decline = card.decline if card is not None else None
    mark_used(state, pm)
    if decline is not None:
        charge = new_charge(state, basis, pm, status="failed", captured=False, failure=decline)
        state.emit("charge.failed", charge)
        raise card_error(
            decline.message,
            code=decline.code,
            decline_code=decline.decline_code,
            extra={"charge": charge["id"]},
        )
    charge = new_charge(state, basis, pm, status="succeeded", captured=capture)
    if capture:
        balance.for_charge(state, charge)
    state.emit("charge.succeeded", charge)
    if capture:
        disputes.dispute_if_test_card(state, charge, pm)
    return charge


def capture_charge(state: SandboxState, charge: StripeObject, amount: int | None) -> StripeObject:
    """Capture an authorized charge, in full or in part; the rest is released (refunded)."""
    if charge["captured"] or charge["status"] != "succeeded":
        raise invalid_request(
            f"Charge {charge['id']} has already been captured.",
            code="charge_already_captured",
        )
    if charge.get("payment_intent"):
        raise invalid_request(
            "This charge belongs to a PaymentIntent: capture the PaymentIntent instead.",
        )
    value = int(charge["amount"]) if amount is None else amount
    if value > int(charge["amount"]):
        raise invalid_request(
            f"The amount to capture ({value}) is greater than the amount authorized "
            f"({charge['amount']}).",
            param="amount",
            code="amount_too_large",
        )
    before = state.update(
        charge,
        {
            "captured": True,
            "amount_captured": value,
            "amount_refunded": int(charge["amount"]) - value,
        },
    )
    balance.for_charge(state, charge, value)
    before.setdefault("balance_transaction", None)
    state.emit("charge.captured", charge, before)
    pm = state.get(PAYMENT_METHOD, charge.get("payment_method") or "")
    if pm is not None:
        disputes.dispute_if_test_card(state, charge, pm)
    return charge


__all__ = ["CHARGE", "capture_charge", "create_charge"]
