"""Customer balance transactions: `/v1/customers/{id}/balance_transactions` (create, retrieve,
update, list). The ledger itself is `billing/customer_balance.py`; invoices use the balance."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing.customer_balance import (
    CUSTOMER_BALANCE_TRANSACTION,
    check_currency,
    record,
    transactions_of,
)
from billfold_sandbox.errors import invalid_request, resource_missing
from billfold_sandbox.params import (
    apply_metadata,
    in_range,
    integer,
    metadata,
    range_filter,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

CREATE = {
    "amount": integer(required=True),
    "currency": string(required=True),
    "description": string(max_length=350),
    "metadata": metadata(),
}
UPDATE = {"description": string(nullable=True, max_length=350), "metadata": metadata()}
LIST = {"created": range_filter(), "invoice": string()}


@router.post("/v1/customers/{id}/balance_transactions", CREATE)
def create_transaction(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["id"], param="customer")
    p = call.params
    if p["amount"] == 0:
        raise invalid_request("Amount must be non-zero.", param="amount")
    check_currency(customer, p["currency"])
    return record(
        call.state,
        customer,
        amount=p["amount"],
        kind="adjustment",
        currency=p["currency"],
        description=p.get("description"),
        metadata=apply_metadata({}, p.get("metadata", {})),
    )


def _transaction(call: Call) -> StripeObject:
    call.require("customer", call.path["id"], param="customer")
    found = call.state.get(CUSTOMER_BALANCE_TRANSACTION, call.path["transaction"])
    if found is None or found["customer"] != call.path["id"]:
        raise resource_missing("customer_balance_transaction", call.path["transaction"], param="id")
    return found


@router.get("/v1/customers/{id}/balance_transactions/{transaction}")
def retrieve_transaction(call: Call) -> StripeObject:
    return _transaction(call)


@router.post("/v1/customers/{id}/balance_transactions/{transaction}", UPDATE)
def update_transaction(call: Call) -> StripeObject:
    found = _transaction(call)
    changes: dict[str, Any] = {}
    if "description" in call.params:
        changes["description"] = call.params["description"]
    if "metadata" in call.params:
        changes["metadata"] = apply_metadata(found["metadata"] or {}, call.params["metadata"])
    call.state.update(found, changes)
    return found


@router.get("/v1/customers/{id}/balance_transactions", LIST, list=True)
def list_transactions(call: Call) -> StripeObject:
    call.require("customer", call.path["id"], param="customer")
    p = call.params
    found = [
        t
        for t in transactions_of(call.state, call.path["id"])
        if ("invoice" not in p or t["invoice"] == p["invoice"])
        and in_range(t.get("created"), p.get("created"))
    ]
    return call.list_response(found)
