"""The customer balance and its ledger: `customer_balance_transaction` objects (`cbtxn_`).

Every change of `customer.balance` is one transaction, as on Stripe: `initial` (a balance given at
creation), `adjustment` (through the API, or a direct update of `balance`), `applied_to_invoice`
(an invoice finalized against the balance), `invoice_too_small` (an amount too small to charge,
carried), `unapplied_from_invoice` (a voided invoice gives back what it took). A negative balance
is a credit the customer's next invoices use; a positive one is owed and added to them.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.state import SandboxState, StripeObject

CUSTOMER_BALANCE_TRANSACTION = "customer_balance_transaction"
DEFAULT_CURRENCY = "usd"


def record(
    state: SandboxState,
    customer: StripeObject,
    *,
    amount: int,
    kind: str,
    currency: str | None = None,
    invoice: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    emit: bool = True,
) -> StripeObject:
    """Move the customer's balance by `amount` and store the transaction. Emits
    `customer.updated` (balance) unless `emit=False` (the caller emits it with its own changes)."""
    cur = (currency or customer.get("currency") or DEFAULT_CURRENCY).lower()
    ending = int(customer.get("balance") or 0) + amount
    txn: StripeObject = {
        "id": state.new_id("cbtxn"),
        "object": CUSTOMER_BALANCE_TRANSACTION,
        "amount": amount,
        "checkout_session": None,
        "created": state.now_for(customer["id"]),
        "credit_note": None,
        "currency": cur,
        "customer": customer["id"],
        "customer_account": None,
        "description": description,
        "ending_balance": ending,
        "invoice": invoice,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "type": kind,
    }
    state.insert(txn)
    changes: dict[str, Any] = {"balance": ending}
    if customer.get("currency") is None:
        changes["currency"] = cur
    previous = state.update(customer, changes)
    if emit and previous:
        state.emit("customer.updated", customer, previous)
    return txn


def check_currency(customer: StripeObject, currency: str) -> None:
    """Stripe refuses a balance transaction in another currency than the customer's."""
    if customer.get("currency") not in (None, currency.lower()):
        raise invalid_request(
            f"The currency of this transaction ({currency.lower()}) must match the customer's "
            f"currency ({customer['currency']}).",
            param="currency",
        )


def transactions_of(state: SandboxState, customer_id: str) -> list[StripeObject]:
    """The customer's balance transactions, newest first."""
    return [
        t
        for t in state.all(CUSTOMER_BALANCE_TRANSACTION, newest_first=True)
        if t["customer"] == customer_id
    ]
