"""Billing credits: `/v1/billing/credit_grants` (create, retrieve, list, update, expire,
void_grant), `/v1/billing/credit_balance_summary` and `/v1/billing/credit_balance_transactions`
(list, retrieve). The rules (and what is simplified): `billing/credit_grants.py`."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing.credit_grants import (
    CREDIT_BALANCE_TRANSACTION,
    CREDIT_GRANT,
    balances,
    money,
    record,
    remaining,
    transactions_of,
)
from billfold_sandbox.errors import invalid_request, missing_parameter
from billfold_sandbox.params import (
    apply_metadata,
    array,
    enum,
    integer,
    metadata,
    obj,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject, Timer

router = SandboxRouter()

EXPIRY_TIMER = "billing.credit_grant.expire"

_SCOPE = obj(
    {
        "price_type": enum("metered"),
        "prices": array(obj({"id": string(required=True)})),
    },
    required=True,
)
CREATE = {
    "amount": obj(
        {
            "monetary": obj(
                {"currency": string(required=True), "value": integer(required=True, min=1)}
            ),
            "type": enum("monetary", required=True),
        },
        required=True,
    ),
    "applicability_config": obj({"scope": _SCOPE}, required=True),
    "category": enum("paid", "promotional"),
    "customer": string(),
    "customer_account": string(),
    "effective_at": integer(min=0),
    "expires_at": integer(min=0),
    "metadata": metadata(),
    "name": string(max_length=100),
    "priority": integer(min=1, max=100),
}
UPDATE = {"expires_at": integer(nullable=True, min=0), "metadata": metadata()}
LIST = {"customer": string(), "customer_account": string()}
SUMMARY = {
    "customer": string(),
    "customer_account": string(),
    "filter": obj(
        {
            "type": enum("applicability_scope", "credit_grant", required=True),
            "applicability_scope": obj(
                {
                    "price_type": enum("metered"),
                    "prices": array(obj({"id": string(required=True)})),
                }
            ),
            "credit_grant": string(),
        },
        required=True,
    ),
}
TRANSACTIONS = {"customer": string(), "customer_account": string(), "credit_grant": string()}


def _customer_of(call: Call) -> StripeObject:
    """The `customer` parameter (a `customer_account` alone is not emulated: Accounts v2)."""
    if "customer" not in call.params:
        if "customer_account" in call.params:
            raise invalid_request(
                "The sandbox emulates customers, not Accounts v2: use `customer`.",
                param="customer_account",
            )
        raise missing_parameter("customer")
    return call.require("customer", call.params["customer"], param="customer")


def _check_scope(call: Call, scope: dict[str, Any], param: str) -> dict[str, Any]:
    if bool(scope.get("price_type")) == bool(scope.get("prices")):
        raise invalid_request(
            f"You must specify exactly one of `{param}[price_type]` or `{param}[prices]`.",
            param=param,
        )
    if scope.get("prices"):
        for index, entry in enumerate(scope["prices"]):
            call.require("price", entry["id"], param=f"{param}[prices][{index}][id]")
        return {"price_type": None, "prices": [{"id": p["id"]} for p in scope["prices"]]}
    return {"price_type": scope["price_type"]}


def _schedule_expiry(state: SandboxState, grant: StripeObject) -> None:
    state.cancel_timers(grant["id"], EXPIRY_TIMER)
    if grant.get("expires_at") is not None and grant.get("voided_at") is None:
        state.schedule(
            int(grant["expires_at"]),
            EXPIRY_TIMER,
            grant["id"],
            clock_id=state.clock_of(grant["customer"]),
        )


@router.post("/v1/billing/credit_grants", CREATE)
def create_credit_grant(call: Call) -> StripeObject:
    p = call.params
    customer = _customer_of(call)
    amount = p["amount"]
    if "monetary" not in amount:
        raise missing_parameter("amount[monetary]")
    currency = amount["monetary"]["currency"].lower()
    if len(currency) != 3 or not currency.isalpha():
        raise invalid_request(
            f"Invalid currency: {amount['monetary']['currency']}",
            param="amount[monetary][currency]",
        )
    scope = _check_scope(call, p["applicability_config"]["scope"], "applicability_config[scope]")
    now = call.state.now_for(customer["id"])
    effective_at = p.get("effective_at", now)
    if "expires_at" in p and p["expires_at"] <= max(effective_at, now):
        raise invalid_request(
            "expires_at must be after effective_at and in the future.", param="expires_at"
        )
    grant: StripeObject = {
        "id": call.state.new_id("credgr"),
        "object": CREDIT_GRANT,
        "amount": money(currency, int(amount["monetary"]["value"])),
        "applicability_config": {"scope": scope},
        "category": p.get("category", "paid"),
        "created": now,
        "customer": customer["id"],
        "customer_account": None,
        "effective_at": effective_at,
        "expires_at": p.get("expires_at"),
        "livemode": False,
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "name": p.get("name"),
        "priority": p.get("priority", 50),
        "test_clock": customer.get("test_clock"),
        "updated": now,
        "voided_at": None,
    }
    call.state.insert(grant)
    call.emit("billing.credit_grant.created", grant)
    record(
        call.state,
        grant,
        kind="credit",
        reason="credits_granted",
        value=int(amount["monetary"]["value"]),
    )
    _schedule_expiry(call.state, grant)
    return grant


@router.get("/v1/billing/credit_grants/{id}")
def retrieve_credit_grant(call: Call) -> StripeObject:
    return call.require(CREDIT_GRANT, call.path["id"])


@router.get("/v1/billing/credit_grants", LIST, list=True)
def list_credit_grants(call: Call) -> StripeObject:
    customer = call.params.get("customer")
    if customer is not None:
        call.require("customer", customer, param="customer")
    found = [
        g
        for g in call.state.all(CREDIT_GRANT, newest_first=True)
        if customer in (None, g["customer"])
    ]
    return call.list_response(found)


def _open_grant(call: Call) -> StripeObject:
    grant = call.require(CREDIT_GRANT, call.path["id"])
    now = call.state.now_for(grant["customer"])
    if grant.get("voided_at") is not None:
        raise invalid_request(f"The credit grant `{grant['id']}` has been voided.")
    if grant.get("expires_at") is not None and int(grant["expires_at"]) <= now:
        raise invalid_request(f"The credit grant `{grant['id']}` has already expired.")
    return grant


@router.post("/v1/billing/credit_grants/{id}", UPDATE)
def update_credit_grant(call: Call) -> StripeObject:
    grant = call.require(CREDIT_GRANT, call.path["id"])
    p = call.params
    changes: dict[str, Any] = {}
    if "expires_at" in p:
        _open_grant(call)
        now = call.state.now_for(grant["customer"])
        if p["expires_at"] is not None and p["expires_at"] <= max(now, int(grant["effective_at"])):
            raise invalid_request(
                "expires_at must be after effective_at and in the future.", param="expires_at"
            )
        changes["expires_at"] = p["expires_at"]
    if "metadata" in p:
        changes["metadata"] = apply_metadata(grant["metadata"], p["metadata"])
    previous = call.state.update(grant, changes)
    if previous:
        call.state.update(grant, {"updated": call.state.now_for(grant["customer"])})
        call.emit("billing.credit_grant.updated", grant, previous)
        _schedule_expiry(call.state, grant)
    return grant


def _close(state: SandboxState, grant: StripeObject, field: str, reason: str) -> None:
    """Expire or void the grant now; its unused remainder becomes a debit."""
    now = state.now_for(grant["customer"])
    left = remaining(state, grant)
    previous = state.update(grant, {field: now, "updated": now})
    state.cancel_timers(grant["id"], EXPIRY_TIMER)
    state.emit("billing.credit_grant.updated", grant, previous)
    if left > 0:
        record(state, grant, kind="debit", reason=reason, value=left)


@router.post("/v1/billing/credit_grants/{id}/expire")
def expire_credit_grant(call: Call) -> StripeObject:
    grant = _open_grant(call)
    _close(call.state, grant, "expires_at", "credits_expired")
    return grant


@router.post("/v1/billing/credit_grants/{id}/void")
def void_credit_grant(call: Call) -> StripeObject:
    grant = _open_grant(call)
    _close(call.state, grant, "voided_at", "credits_voided")
    return grant


@router.timer(EXPIRY_TIMER)
def grant_expires(state: SandboxState, timer: Timer) -> None:
    """`expires_at` reached on the customer's clock: the remainder is debited."""
    grant = state.get(CREDIT_GRANT, timer.object_id)
    if grant is None or grant.get("voided_at") is not None:
        return
    if grant.get("expires_at") != timer.at:
        return  # the expiry moved since this timer was set
    left = remaining(state, grant)
    if left > 0:
        record(state, grant, kind="debit", reason="credits_expired", value=left)


@router.get("/v1/billing/credit_balance_summary", SUMMARY)
def credit_balance_summary(call: Call) -> StripeObject:
    customer = _customer_of(call)
    f = call.params["filter"]
    grant_id, scope = None, None
    if f["type"] == "credit_grant":
        if not f.get("credit_grant"):
            raise missing_parameter("filter[credit_grant]")
        grant_id = call.require(CREDIT_GRANT, f["credit_grant"], param="filter[credit_grant]")["id"]
    else:
        if not f.get("applicability_scope"):
            raise missing_parameter("filter[applicability_scope]")
        scope = _check_scope(call, f["applicability_scope"], "filter[applicability_scope]")
    return {
        "object": "billing.credit_balance_summary",
        "balances": balances(call.state, customer["id"], grant_id, scope),
        "customer": customer["id"],
        "customer_account": None,
        "livemode": False,
    }


@router.get("/v1/billing/credit_balance_transactions", TRANSACTIONS, list=True)
def list_credit_balance_transactions(call: Call) -> StripeObject:
    customer = _customer_of(call)
    grant = call.params.get("credit_grant")
    if grant is not None:
        call.require(CREDIT_GRANT, grant, param="credit_grant")
    return call.list_response(transactions_of(call.state, customer=customer["id"], grant=grant))


@router.get("/v1/billing/credit_balance_transactions/{id}")
def retrieve_credit_balance_transaction(call: Call) -> StripeObject:
    return call.require(CREDIT_BALANCE_TRANSACTION, call.path["id"])
