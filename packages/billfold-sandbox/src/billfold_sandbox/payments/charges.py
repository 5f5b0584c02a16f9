"""Charges: the record of one payment attempt of a PaymentIntent, in Stripe's shape."""

from __future__ import annotations

import copy
from typing import Any

from billfold_sandbox.payments.instruments import BankFailure, Decline
from billfold_sandbox.payments.methods import card_of
from billfold_sandbox.state import SandboxState, StripeObject

CHARGE = "charge"
STATEMENT_DESCRIPTOR = "BILLFOLD SANDBOX"


def _outcome(failure: Decline | BankFailure | None, *, pending: bool = False) -> dict[str, Any]:
    if failure is None:
        return {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
    decline_code = failure.decline_code if isinstance(failure, Decline) else None
    if decline_code in (None, "generic_decline"):
        message = "The bank did not return any further details with this decline."
    else:
        message = f"The bank returned the decline code `{decline_code}`."
    return {
        "advice_code": "try_again_later" if decline_code == "processing_error" else None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "declined_by_network",
        "reason": decline_code,
        "seller_message": message,
        "type": "issuer_declined",
    }


def _details(pm: StripeObject, amount: int, three_d_secure: bool) -> dict[str, Any]:
    if pm["type"] == "us_bank_account":
        bank = pm["us_bank_account"]
        return {
            "type": "us_bank_account",
            "us_bank_account": {
                "account_holder_type": bank["account_holder_type"],
                "account_type": bank["account_type"],
                "bank_name": bank["bank_name"],
                "fingerprint": bank["fingerprint"],
                "last4": bank["last4"],
                "mandate": None,
                "payment_reference": None,
                "routing_number": bank["routing_number"],
            },
        }
    card = pm["card"]
    return {
        "type": "card",
        "card": {
            "amount_authorized": amount,
            "authorization_code": None,
            "brand": card["brand"],
            "checks": dict(card["checks"]),
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": card["fingerprint"],
            "funding": card["funding"],
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": card["last4"],
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": card["brand"],
            "network_token": {"used": False},
            "network_transaction_id": None,
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": card.get("regulated_status"),
            "three_d_secure": (
                {
                    "authentication_flow": "challenge",
                    "electronic_commerce_indicator": "05",
                    "exemption_indicator": None,
                    "result": "authenticated",
                    "result_reason": None,
                    "transaction_id": None,
                    "version": "2.2.0",
                }
                if three_d_secure
                else None
            ),
            "wallet": None,
        },
    }


def new_charge(
    state: SandboxState,
    intent: StripeObject,
    pm: StripeObject,
    *,
    status: str,
    captured: bool,
    failure: Decline | BankFailure | None = None,
    three_d_secure: bool = False,
) -> StripeObject:
    """Store the Charge for one attempt of `intent` with `pm` (succeeded, pending or failed)."""
    amount = int(intent["amount"])
    charge_id = state.new_id("ch")
    card = card_of(pm)
    failure_code = failure.code if failure is not None else None
    charge: StripeObject = {
        "id": charge_id,
        "object": CHARGE,
        "amount": amount,
        "amount_captured": amount if captured and status == "succeeded" else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": copy.deepcopy(pm["billing_details"]),
        "calculated_statement_descriptor": intent.get("statement_descriptor")
        or STATEMENT_DESCRIPTOR,
        "captured": captured and status != "failed",
        "created": state.now_for(intent),
        "currency": intent["currency"],
        "customer": intent.get("customer"),
        "description": intent.get("description"),
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure.message if failure is not None else None,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(intent.get("metadata") or {}),
        "on_behalf_of": None,
        "outcome": _outcome(failure),
        "paid": status == "succeeded",
        "payment_intent": intent["id"],
        "payment_method": pm["id"],
        "payment_method_details": _details(pm, amount, three_d_secure),
        "receipt_email": intent.get("receipt_email"),
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        "review": None,
        "shipping": intent.get("shipping"),
        "source": None,
        "source_transfer": None,
        "statement_descriptor": intent.get("statement_descriptor"),
        "statement_descriptor_suffix": intent.get("statement_descriptor_suffix"),
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    if card is not None and failure_code == "incorrect_cvc":
        charge["payment_method_details"]["card"]["checks"]["cvc_check"] = "fail"
    state.insert(charge)
    return charge


def refundable(charge: StripeObject) -> int:
    """What is left to refund on a charge (its captured amount less earlier refunds)."""
    if charge["status"] != "succeeded" or not charge["captured"]:
        return 0
    return int(charge["amount"]) - int(charge["amount_refunded"])
