"""Customers: create, retrieve, update, delete, list, search."""

from __future__ import annotations

import secrets

from billfold_sandbox import payments
from billfold_sandbox.billing.events import held_events
from billfold_sandbox.billing.lifecycle import ENDED, cancel_now
from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.params import (
    anything,
    apply_metadata,
    array,
    boolean,
    enum,
    in_range,
    integer,
    metadata,
    obj,
    range_filter,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.search import search_response
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

_ADDRESS = obj(
    {
        "city": string(nullable=True),
        "country": string(nullable=True),
        "line1": string(nullable=True),
        "line2": string(nullable=True),
        "postal_code": string(nullable=True),
        "state": string(nullable=True),
    },
    nullable=True,
)
_INVOICE_SETTINGS = obj(
    {
        "default_payment_method": string(nullable=True),
        "custom_fields": anything(),
        "footer": string(nullable=True),
        "rendering_options": anything(),
    }
)
_FIELDS = {
    "address": _ADDRESS,
    "balance": integer(),
    "description": string(nullable=True),
    "email": string(nullable=True, max_length=512),
    "invoice_prefix": string(),
    "invoice_settings": _INVOICE_SETTINGS,
    "metadata": metadata(),
    "name": string(nullable=True, max_length=256),
    "next_invoice_sequence": integer(min=1),
    "phone": string(nullable=True, max_length=20),
    "preferred_locales": array(string()),
    "shipping": anything(),
    "tax_exempt": enum("none", "exempt", "reverse", nullable=True),
    "payment_method": string(),
    "source": string(),
    "tax": anything(),
    "tax_id_data": anything(),
    # Accepted as Stripe accepts them; not part of the customer object the sandbox returns.
    "business_name": string(nullable=True, max_length=150),
    "individual_name": string(nullable=True, max_length=150),
    "cash_balance": anything(),
    "validate": boolean(),
}
CREATE = {**_FIELDS, "test_clock": string()}
UPDATE = {**_FIELDS, "default_source": string(nullable=True)}
LIST = {
    "email": string(max_length=512),
    "created": range_filter(),
    "test_clock": string(),
}


def _check_default_payment_method(call: Call, pm_id: str | None, customer_id: str) -> None:
    """Stripe refuses a default payment method that is not attached to the customer."""
    if pm_id is None:
        return
    pm = call.require("payment_method", pm_id, param="invoice_settings[default_payment_method]")
    if pm.get("customer") != customer_id:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {pm_id}. The payment "
            "method must be attached to the customer.",
            param="invoice_settings[default_payment_method]",
            code="resource_missing",
        )


def _invoice_settings(
    current: dict[str, object] | None, update: dict[str, object]
) -> dict[str, object]:
    settings: dict[str, object] = dict(
        current
        or {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        }
    )
    settings.update(update)
    return settings


@router.post("/v1/customers", CREATE)
def create_customer(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    clock_id = p.get("test_clock")
    if clock_id:
        call.require("test_helpers.test_clock", clock_id, param="test_clock")
    invoice_settings = _invoice_settings(None, p.get("invoice_settings", {}))
    # `payment_method` is attached at creation (a test id such as pm_card_visa becomes a fresh
    # PaymentMethod); naming the same id as the default makes that fresh one the default.
    pm: StripeObject | None = None
    if p.get("payment_method"):
        pm = payments.resolve_payment_method(state, p["payment_method"])
        if invoice_settings.get("default_payment_method") == p["payment_method"]:
            invoice_settings["default_payment_method"] = pm["id"]
    default_pm = invoice_settings.get("default_payment_method")
    if default_pm is not None and (pm is None or default_pm != pm["id"]):
        # A brand-new customer has no other attached payment method.
        _check_default_payment_method(call, str(default_pm), "")
    customer: StripeObject = {
        "id": state.new_id("cus", 14),
        "object": "customer",
        "address": p.get("address"),
        "balance": p.get("balance", 0),
        "created": state.now(clock_id),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": p.get("description"),
        "discount": None,
        "email": p.get("email"),
        "invoice_prefix": p.get("invoice_prefix") or secrets.token_hex(4).upper(),
        "invoice_settings": invoice_settings,
        "livemode": False,
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "name": p.get("name"),
        "next_invoice_sequence": p.get("next_invoice_sequence", 1),
        "phone": p.get("phone"),
        "preferred_locales": p.get("preferred_locales", []),
        "shipping": p.get("shipping"),
        "tax_exempt": p.get("tax_exempt") or "none",
        "test_clock": clock_id,
    }
    state.insert(customer)
    # The payment engine attaches (and refuses what Stripe refuses at attach: declined cards,
    # methods owned by someone else or used up). A refusal creates nothing, so the customer's
    # events are held until the attachment went through.
    with held_events(state) as held:
        call.emit("customer.created", customer)
        if pm is not None:
            try:
                payments.attach_payment_method(state, pm["id"], customer["id"])
            except StripeError:
                held.drop_about(customer["id"])
                state.remove("customer", customer["id"])
                raise
    return customer


@router.get("/v1/customers/{id}")
def retrieve_customer(call: Call) -> StripeObject:
    customer = call.state.require("customer", call.path["id"], deleted_ok=True)
    return customer


@router.post("/v1/customers/{id}", UPDATE)
def update_customer(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["id"])
    p = dict(call.params)
    p.pop("expand", None)
    changes: dict[str, object] = {}
    if "invoice_settings" in p:
        update = p.pop("invoice_settings")
        _check_default_payment_method(call, update.get("default_payment_method"), customer["id"])
        changes["invoice_settings"] = _invoice_settings(customer["invoice_settings"], update)
    if "metadata" in p:
        changes["metadata"] = apply_metadata(customer["metadata"], p.pop("metadata"))
    for ignored in (
        "payment_method",
        "source",
        "tax",
        "tax_id_data",
        "business_name",
        "individual_name",
        "cash_balance",
        "validate",
    ):
        p.pop(ignored, None)
    if "tax_exempt" in p and p["tax_exempt"] is None:
        p["tax_exempt"] = "none"
    changes.update(p)
    previous = call.state.update(customer, changes)
    if previous:
        call.emit("customer.updated", customer, previous)
    return customer


def delete_customer(state: SandboxState, customer: StripeObject) -> StripeObject:
    """Delete a customer as Stripe does: its subscriptions are canceled at once (no proration,
    no final invoice; `customer.subscription.deleted` each), its payment methods detached
    (`payment_method.detached` each), then `customer.deleted`. Returns the deleted stub.
    (Also what deleting the customer's test clock does to each of its customers.)"""
    for sub in state.all("subscription"):
        if sub.get("customer") == customer["id"] and sub.get("status") not in ENDED:
            cancel_now(state, sub)
    snapshot = dict(customer)
    deleted = state.mark_deleted(customer)
    # Detached after the customer is gone, so no `customer.updated` clears its default.
    for pm in state.all("payment_method"):
        if pm.get("customer") == customer["id"]:
            payments.detach_payment_method(state, pm["id"])
    state.emit("customer.deleted", snapshot)
    return deleted


@router.delete("/v1/customers/{id}")
def delete_customer_route(call: Call) -> StripeObject:
    return delete_customer(call.state, call.require("customer", call.path["id"]))


@router.get("/v1/customers", LIST, list=True)
def list_customers(call: Call) -> StripeObject:
    p = call.params
    found = [
        c
        for c in call.state.all("customer", newest_first=True)
        if ("email" not in p or c.get("email") == p["email"])
        and ("test_clock" not in p or c.get("test_clock") == p["test_clock"])
        and in_range(c.get("created"), p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/customers/search", search=True)
def search_customers(call: Call) -> StripeObject:
    return search_response(
        call,
        call.state.all("customer", newest_first=True),
        {
            "email": lambda c: c.get("email"),
            "name": lambda c: c.get("name"),
            "phone": lambda c: c.get("phone"),
            "created": lambda c: c.get("created"),
        },
    )
