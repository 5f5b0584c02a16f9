"""Disputes, as Stripe test mode makes them: a payment with one of the dispute test cards is
disputed right after it succeeds; evidence decides the outcome.

- `4000000000000259` (`pm_card_createDispute`): disputed as fraudulent, `needs_response`;
- `4000000000002685` (`pm_card_createDisputeProductNotReceived`): product not received;
- `4000000000001976` (`pm_card_createDisputeInquiry`): an inquiry (`warning_needs_response`),
  no funds move.

A dispute withdraws the amount and Stripe's dispute fee (`charge.dispute.funds_withdrawn`, one
balance transaction). Submitting evidence whose `uncategorized_text` is `winning_evidence` wins it
(`won`, funds and fee reinstated: `charge.dispute.funds_reinstated`); `losing_evidence` loses it
(`lost`); other evidence leaves it `under_review`. Closing a dispute accepts it (`lost`).
"""

from __future__ import annotations

import copy
from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.payments import balance
from billfold_sandbox.state import SandboxState, StripeObject

DISPUTE = "dispute"
DAY = 86_400
EVIDENCE_DUE_DAYS = 7
WINNING = "winning_evidence"
LOSING = "losing_evidence"

# test card number -> (reason, inquiry?, network reason code)
DISPUTE_CARDS: dict[str, tuple[str, bool, str]] = {
    "4000000000000259": ("fraudulent", False, "10.4"),
    "4000000000002685": ("product_not_received", False, "13.1"),
    "4000000000001976": ("fraudulent", True, "10.4"),
}
EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
OPEN = ("needs_response", "warning_needs_response", "under_review", "warning_under_review")


def dispute_if_test_card(state: SandboxState, charge: StripeObject, pm: StripeObject) -> None:
    """Open the dispute a dispute test card asks for, once its charge succeeded."""
    found = DISPUTE_CARDS.get(str(pm.get("_card") or ""))
    if found is not None and charge.get("captured"):
        reason, inquiry, code = found
        open_dispute(state, charge, reason=reason, inquiry=inquiry, network_reason_code=code)


def open_dispute(
    state: SandboxState,
    charge: StripeObject,
    *,
    reason: str,
    inquiry: bool = False,
    network_reason_code: str = "10.4",
) -> StripeObject:
    """A new dispute on `charge`: `charge.dispute.created`, then (not for an inquiry) the funds
    withdrawn (`charge.dispute.funds_withdrawn`)."""
    created = state.now_for(charge)
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    dispute: StripeObject = {
        "id": state.new_id("dp"),
        "object": DISPUTE,
        "amount": int(charge["amount"]),
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(EVIDENCE_FIELDS), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": created + EVIDENCE_DUE_DAYS * DAY,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": inquiry,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method_details": {
            "card": {
                "brand": card.get("brand", "visa"),
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": network_reason_code,
            },
            "type": "card",
        },
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    state.insert(dispute)
    state.update(charge, {"disputed": True})
    state.emit("charge.dispute.created", dispute)
    if not inquiry:
        withdrawn = balance.record(
            state,
            dispute,
            amount=-int(dispute["amount"]),
            kind="adjustment",
            category="dispute",
            fee=balance.DISPUTE_FEE,
            fee_description="Dispute fee",
            description=f"Chargeback withdrawal for {charge['id']}",
        )
        state.update(dispute, {"balance_transactions": [state.render(withdrawn)]})
        state.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def _check_open(dispute: StripeObject) -> None:
    if dispute["status"] not in OPEN:
        raise invalid_request(
            f"This dispute is already closed (status: {dispute['status']}).",
            code="charge_dispute_already_closed"
            if dispute["status"] in ("won", "lost", "warning_closed")
            else None,
        )


def update_dispute(
    state: SandboxState,
    dispute: StripeObject,
    *,
    evidence: dict[str, Any] | None,
    submit: bool,
    metadata: dict[str, Any] | None,
) -> StripeObject:
    """Add evidence (and submit it, as Stripe does by default); winning or losing evidence
    decides the dispute at once in test mode."""
    changes: dict[str, Any] = {}
    if metadata is not None:
        changes["metadata"] = metadata
    if evidence or submit:
        _check_open(dispute)
    inquiry = dispute["status"].startswith("warning_")
    if evidence:
        merged = copy.deepcopy(dispute["evidence"])
        merged.update(evidence)
        changes["evidence"] = merged
        details = dict(dispute["evidence_details"], has_evidence=True)
        changes["evidence_details"] = details
    if submit and dispute["status"] in ("needs_response", "warning_needs_response"):
        details = dict(changes.get("evidence_details") or dispute["evidence_details"])
        details["submission_count"] = int(details["submission_count"]) + 1
        details["due_by"] = None
        changes["evidence_details"] = details
        changes["status"] = "warning_under_review" if inquiry else "under_review"
        changes["is_charge_refundable"] = False
    previous = state.update(dispute, changes)
    if previous:
        state.emit("charge.dispute.updated", dispute, previous)
    text = (changes.get("evidence") or {}).get("uncategorized_text")
    if submit and text in (WINNING, LOSING):
        _decide(state, dispute, won=text == WINNING)
    return dispute


def _decide(state: SandboxState, dispute: StripeObject, *, won: bool) -> None:
    inquiry = dispute["status"].startswith("warning_")
    status = "warning_closed" if inquiry else ("won" if won else "lost")
    previous = state.update(dispute, {"status": status})
    if won and not inquiry:
        reinstated = balance.record(
            state,
            dispute,
            amount=int(dispute["amount"]),
            kind="adjustment",
            category="dispute_reversal",
            fee=-balance.DISPUTE_FEE,
            fee_description="Dispute fee refund",
            description=f"Chargeback reversal for {dispute['charge']}",
        )
        state.update(
            dispute,
            {"balance_transactions": [*dispute["balance_transactions"], state.render(reinstated)]},
        )
        state.emit("charge.dispute.funds_reinstated", dispute)
    state.emit("charge.dispute.closed", dispute, previous)


def close_dispute(state: SandboxState, dispute: StripeObject) -> StripeObject:
    """Accept the dispute: it is lost (an inquiry is simply closed)."""
    _check_open(dispute)
    _decide(state, dispute, won=False)
    return dispute
