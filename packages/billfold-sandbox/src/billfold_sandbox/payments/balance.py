"""Balance transactions: what each charge, refund and dispute does to the account's balance.

Stripe records one `txn_` BalanceTransaction per movement: a charge (amount, Stripe's fee, net),
a refund (negative), a dispute's withdrawal (the amount and the dispute fee) and reinstatement.
The sandbox charges Stripe's US card price (2.9% + 30 cents) and a 15.00 dispute fee; funds are
available two days later on the object's clock.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.state import SandboxState, StripeObject

BALANCE_TRANSACTION = "balance_transaction"
DAY = 86_400
DISPUTE_FEE = 1500


def card_fee(amount: int) -> int:
    """Stripe's standard fee for a US card payment: 2.9% + 30 cents (rounded half up)."""
    return (amount * 29 + 500) // 1000 + 30


def record(
    state: SandboxState,
    source: StripeObject,
    *,
    amount: int,
    kind: str,
    category: str,
    fee: int = 0,
    fee_description: str = "Stripe processing fees",
    description: str | None = None,
) -> StripeObject:
    """Store one balance transaction for `source` (a charge, refund or dispute) and return it."""
    created = state.now_for(source)
    fee_details: list[dict[str, Any]] = (
        [
            {
                "amount": fee,
                "application": None,
                "currency": source["currency"],
                "description": fee_description,
                "type": "stripe_fee",
            }
        ]
        if fee
        else []
    )
    txn: StripeObject = {
        "id": state.new_id("txn"),
        "object": BALANCE_TRANSACTION,
        "amount": amount,
        "available_on": created + 2 * DAY,
        "balance_type": "payments",
        "created": created,
        "currency": source["currency"],
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": fee_details,
        "net": amount - fee,
        "reporting_category": category,
        "source": source["id"],
        "status": "pending",
        "type": kind,
    }
    state.insert(txn)
    return txn


def for_charge(state: SandboxState, charge: StripeObject, amount: int | None = None) -> None:
    """The captured charge's balance transaction (`charge.balance_transaction`)."""
    value = int(charge["amount_captured"] if amount is None else amount)
    is_bank = (charge.get("payment_method_details") or {}).get("type") == "us_bank_account"
    fee = min(500, (value * 8 + 500) // 1000) if is_bank else card_fee(value)
    txn = record(
        state,
        charge,
        amount=value,
        kind="payment" if is_bank else "charge",
        category="charge",
        fee=fee,
        description=charge.get("description"),
    )
    state.update(charge, {"balance_transaction": txn["id"]})


def for_refund(state: SandboxState, refund: StripeObject) -> None:
    """The refund's balance transaction (negative; Stripe keeps its fee)."""
    txn = record(
        state,
        refund,
        amount=-int(refund["amount"]),
        kind="refund",
        category="refund",
        description="REFUND FOR CHARGE",
    )
    state.update(refund, {"balance_transaction": txn["id"]})
