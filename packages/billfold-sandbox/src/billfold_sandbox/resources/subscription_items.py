"""Subscription items: create, update and delete (retrieve and list are in subscriptions.py).

On Stripe an item call is a subscription update touching one item, and so it is here: each
call runs the subscription update (`POST /v1/subscriptions/{id}` with one `items[0]` entry), so
prorations (pending invoice items for the next invoice, `always_invoice`, `none`),
`payment_behavior=error_if_incomplete`, a new billing cycle on an interval change and the
`customer.subscription.updated` event are the same as for a subscription update.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

from billfold_sandbox.billing import lifecycle
from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.params import Field, anything, boolean, enum, integer, metadata, string
from billfold_sandbox.resources.subscriptions import PRICE_DATA, _find_item, update_subscription
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

PRORATION = enum("always_invoice", "create_prorations", "none")
PAYMENT_BEHAVIOR = enum(
    "allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"
)
_ITEM: dict[str, Field] = {
    "price": string(),
    "plan": string(),
    "price_data": PRICE_DATA,
    "quantity": integer(min=0),
    "metadata": metadata(),
    "proration_behavior": PRORATION,
    "proration_date": integer(),
    "payment_behavior": PAYMENT_BEHAVIOR,
    # Accepted as Stripe does; the sandbox does not model them.
    "billing_thresholds": anything(),
    "discounts": anything(),
    "tax_rates": anything(),
    "current_trial": anything(),
}
CREATE: dict[str, Field] = {**_ITEM, "subscription": string(required=True)}
UPDATE: dict[str, Field] = {**_ITEM, "off_session": boolean()}
DELETE: dict[str, Field] = {
    "clear_usage": boolean(),
    "proration_behavior": PRORATION,
    "proration_date": integer(),
    "payment_behavior": PAYMENT_BEHAVIOR,
}
_SUBSCRIPTION_LEVEL = ("proration_behavior", "proration_date", "payment_behavior", "off_session")
_ITEM_PARAM = re.compile(r"^items(?:\[\d+\])?(?:\[(\w+)\])?")


def _update_through_subscription(
    call: Call, sub: StripeObject, entry: dict[str, Any]
) -> StripeObject:
    """Run the subscription update with `items[0]=entry` and the call's subscription-level
    parameters; errors name the item call's own parameters (`price`, not `items[0][price]`)."""
    params: dict[str, Any] = {"items": [entry]}
    params.update({k: call.params[k] for k in _SUBSCRIPTION_LEVEL if k in call.params})
    inner = dataclasses.replace(call, params=params, path={"id": sub["id"]})
    try:
        return cast(StripeObject, update_subscription(inner))
    except StripeError as exc:
        if exc.param:
            exc.param = _ITEM_PARAM.sub(lambda m: m.group(1) or "price", exc.param)
        raise


def _entry(call: Call) -> dict[str, Any]:
    return {
        k: call.params[k]
        for k in ("price", "plan", "price_data", "quantity", "metadata")
        if k in call.params
    }


def _live(sub: StripeObject) -> None:
    if sub["status"] in lifecycle.ENDED:
        raise invalid_request(
            f"The subscription {sub['id']} has been canceled; its items cannot be changed.",
            param="subscription",
        )


@router.post("/v1/subscription_items", CREATE)
def create_subscription_item(call: Call) -> StripeObject:
    """Add an item (a price and quantity) to a subscription."""
    sub = call.require("subscription", call.params["subscription"], param="subscription")
    _live(sub)
    entry = _entry(call)
    if not any(k in entry for k in ("price", "plan", "price_data")):
        raise invalid_request(
            "Missing required param: price.", param="price", code="parameter_missing"
        )
    before = {i["id"] for i in lifecycle.items_of(sub)}
    sub = _update_through_subscription(call, sub, entry)
    return next(i for i in lifecycle.items_of(sub) if i["id"] not in before)


@router.post("/v1/subscription_items/{id}", UPDATE)
def update_subscription_item(call: Call) -> StripeObject:
    """Change an item's price, quantity or metadata (prorated like a subscription update)."""
    sub, item = _find_item(call, call.path["id"])
    _live(sub)
    entry = {"id": item["id"], **_entry(call)}
    sub = _update_through_subscription(call, sub, entry)
    return next(i for i in lifecycle.items_of(sub) if i["id"] == item["id"])


@router.delete("/v1/subscription_items/{id}", DELETE)
def delete_subscription_item(call: Call) -> StripeObject:
    """Remove an item; unused time on it is credited (`proration_behavior`). A subscription
    keeps at least one item: cancel it instead."""
    sub, item = _find_item(call, call.path["id"])
    _live(sub)
    if len(lifecycle.items_of(sub)) == 1:
        raise invalid_request(
            "A subscription must have at least one active plan. To cancel a subscription, "
            "please use the cancel API endpoint on /v1/subscriptions.",
            param="id",
        )
    _update_through_subscription(call, sub, {"id": item["id"], "deleted": True})
    return {"id": item["id"], "object": "subscription_item", "deleted": True}
