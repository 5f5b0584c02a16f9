"""Refunds of a succeeded charge, in full or in part, never more than what is left."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import apply_metadata
from billfold_sandbox.payments.charges import CHARGE, refundable
from billfold_sandbox.state import SandboxState, StripeObject

REFUND = "refund"
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$"}


def _money(amount: int, currency: str) -> str:
    return f"{_SYMBOLS.get(currency, '')}{amount / 100:,.2f}"


def charge_to_refund(
    state: SandboxState, *, charge: str | None, payment_intent: str | None
) -> StripeObject:
    """The charge a refund request points at (by charge, or by the intent's latest charge)."""
    if charge is None and payment_intent is None:
        raise invalid_request(
            "One of the following params should be provided for this request: payment_intent "
            "or charge.",
            param="charge",
            code="parameter_missing",
        )
    if payment_intent is not None:
        intent = state.require("payment_intent", payment_intent, param="payment_intent")
        found = state.get(CHARGE, intent.get("latest_charge") or "")
        if found is None or intent["status"] != "succeeded":
            raise invalid_request(
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
        if charge is not None and charge != found["id"]:
            raise invalid_request(
                f"The charge {charge} does not belong to PaymentIntent {intent['id']}.",
                param="charge",
            )
        return found
    assert charge is not None
    return state.require(CHARGE, charge, param="charge")


def refund(
    state: SandboxState,
    charge: StripeObject,
    *,
    amount: int | None = None,
    reason: str | None = None,
    metadata: dict[str, str | None] | None = None,
) -> StripeObject:
    """Refund `amount` (all that is left by default) of a charge; emits `refund.created` and
    `charge.refunded`."""
    if charge["status"] != "succeeded" or not charge["captured"]:
        raise invalid_request(
            f"Charge {charge['id']} has not been captured or did not succeed, so it cannot be "
            "refunded.",
            param="charge",
            code="charge_not_refundable",
        )
    left = refundable(charge)
    if left <= 0:
        raise invalid_request(
            f"Charge {charge['id']} has already been refunded.",
            param="charge",
            code="charge_already_refunded",
        )
    value = left if amount is None else amount
    if value > left:
        currency = charge["currency"]
        raise invalid_request(
            f"Refund amount ({_money(value, currency)}) is greater than unrefunded amount on "
            f"charge ({_money(left, currency)})",
            # Stripe sends no `code` for this refusal, only the parameter.
            param="amount",
        )
    pm = state.get("payment_method", charge.get("payment_method") or "")
    card = (pm or {}).get("type") != "us_bank_account"
    destination: dict[str, Any] = (
        {
            "card": {
                "reference": None,
                "reference_status": "pending",
                "reference_type": None,
                "type": "refund",
            },
            "type": "card",
        }
        if card
        else {
            "type": "us_bank_transfer",
            "us_bank_transfer": {"reference": None, "reference_status": None},
        }
    )
    created: StripeObject = {
        "id": state.new_id("re"),
        "object": REFUND,
        "amount": value,
        "balance_transaction": None,
        "charge": charge["id"],
        "created": state.now_for(charge),
        "currency": charge["currency"],
        "customer": charge.get("customer"),
        "customer_account": None,
        "destination_details": destination,
        "metadata": apply_metadata({}, metadata or {}),
        "payment_intent": charge.get("payment_intent"),
        "payment_method": charge.get("payment_method"),
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    state.insert(created)
    refunded = int(charge["amount_refunded"]) + value
    previous = state.update(
        charge,
        {
            "amount_refunded": refunded,
            "refunded": refunded >= int(charge["amount"]),
            "refunds": refunds_list(state, charge["id"]),
        },
    )
    state.emit("refund.created", created)
    state.emit("charge.refunded", charge, previous)
    return created


def refunds_list(state: SandboxState, charge_id: str) -> dict[str, Any]:
    """The charge's `refunds` list object (newest first)."""
    data = [r for r in state.all(REFUND, newest_first=True) if r["charge"] == charge_id]
    return {
        "object": "list",
        "data": [state.render(r) for r in data[:10]],
        "has_more": len(data) > 10,
        "url": f"/v1/charges/{charge_id}/refunds",
    }
