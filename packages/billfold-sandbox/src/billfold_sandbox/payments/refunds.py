"""Refunds of a succeeded charge, in full or in part, never more than what is left."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import apply_metadata
from billfold_sandbox.payments import balance
from billfold_sandbox.payments.charges import CHARGE, refundable
from billfold_sandbox.state import SandboxState, StripeObject

REFUND = "refund"
REFUND_OUTCOME_TIMER = "refund.outcome"
# How long a refund of the refund test cards waits for its outcome (on the charge's clock).
REFUND_OUTCOME_SECONDS = 60
# Stripe's refund test cards: the refund stays `pending`, then succeeds; or it succeeds, then
# fails (`refund.failed`, the money back on the balance).
PENDING_REFUND_CARD = "4000000000007726"
FAILING_REFUND_CARD = "4000000000005126"
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
    if charge.get("disputed") and any(
        d.get("charge") == charge["id"] and not d.get("is_charge_refundable")
        for d in state.all("dispute")
    ):
        # As on Stripe: a charged-back charge is not refunded (an inquiry's still may be).
        raise invalid_request(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.",
            param="charge",
            code="charge_disputed",
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
    test_card = str((pm or {}).get("_card") or "")
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
        "status": "pending" if test_card == PENDING_REFUND_CARD else "succeeded",
        "transfer_reversal": None,
    }
    if test_card in (PENDING_REFUND_CARD, FAILING_REFUND_CARD):
        created["_outcome"] = "fail" if test_card == FAILING_REFUND_CARD else "succeed"
        state.schedule(
            state.now_for(charge) + REFUND_OUTCOME_SECONDS,
            REFUND_OUTCOME_TIMER,
            created["id"],
            clock_id=state.clock_of(charge),
        )
    state.insert(created)
    balance.for_refund(state, created)
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


def refund_outcome(state: SandboxState, timer: Any) -> None:
    """The later outcome of a refund test card's refund: `pending` becomes `succeeded`; a
    `succeeded` one of the failing card becomes `failed` and its amount returns to the charge."""
    found = state.get(REFUND, timer.object_id)
    if found is None or found.get("_outcome") is None:
        return
    charge = state.get(CHARGE, found["charge"])
    if found["_outcome"] == "succeed":
        previous = state.update(found, {"status": "succeeded", "_outcome": None})
        state.emit("refund.updated", found, previous)
        state.emit("charge.refund.updated", found, previous)
        if charge is not None:
            state.update(charge, {"refunds": refunds_list(state, charge["id"])})
        return
    failure = balance.record(
        state,
        found,
        amount=int(found["amount"]),
        kind="refund_failure",
        category="refund_failure",
        description="REFUND FAILURE",
    )
    previous = state.update(
        found,
        {
            "status": "failed",
            "failure_reason": "expired_or_canceled_card",
            "failure_balance_transaction": failure["id"],
            "_outcome": None,
        },
    )
    if charge is not None:
        refunded = int(charge["amount_refunded"]) - int(found["amount"])
        state.update(
            charge,
            {
                "amount_refunded": refunded,
                "refunded": False,
                "refunds": refunds_list(state, charge["id"]),
            },
        )
    state.emit("refund.updated", found, previous)
    state.emit("charge.refund.updated", found, previous)
    state.emit("refund.failed", found, previous)
