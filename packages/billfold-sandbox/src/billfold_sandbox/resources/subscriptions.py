"""Subscriptions and subscription items: create, retrieve, update, cancel, resume, list, search.

The rules (statuses, prorations, renewals, retries) live in `billfold_sandbox.billing`.
"""

from __future__ import annotations

import copy
from typing import Any

from billfold_sandbox.billing import discounts as discounting
from billfold_sandbox.billing import invoicing, lifecycle, payments_port, sending
from billfold_sandbox.billing.events import held_events
from billfold_sandbox.billing.metering import refuse_quantity
from billfold_sandbox.billing.settings import DEFAULTS, set_billing_settings
from billfold_sandbox.errors import card_error, invalid_request
from billfold_sandbox.pages import remember_base
from billfold_sandbox.params import (
    Field,
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
    timestamp,
)
from billfold_sandbox.resources import common_params
from billfold_sandbox.resources.prices import new_price
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.search import search_response
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

PRICE_DATA = obj(
    {
        "currency": string(required=True),
        "product": string(required=True),
        "recurring": obj(
            {
                "interval": enum("day", "week", "month", "year", required=True),
                "interval_count": integer(min=1),
            },
            required=True,
        ),
        "unit_amount": integer(min=0),
        "unit_amount_decimal": string(),
        "tax_behavior": enum("exclusive", "inclusive", "unspecified"),
    }
)
_ITEM_FIELDS: dict[str, Field] = {
    "price": string(),
    "price_data": PRICE_DATA,
    "quantity": integer(min=0),
    "metadata": metadata(),
    "discounts": anything(),
    "tax_rates": anything(),
    "billing_thresholds": anything(),
    "plan": string(),  # the legacy name of `price`
    "current_trial": anything(),
}
DISCOUNTS = array(obj({"coupon": string(), "promotion_code": string(), "discount": string()}))
TRIAL_SETTINGS = obj(
    {
        "end_behavior": obj(
            {
                "missing_payment_method": enum("cancel", "create_invoice", "pause"),
                "billing_cycle_anchor": anything(),
            },
            required=True,
        )
    }
)
_IGNORED: dict[str, Field] = {
    name: anything()
    for name in (
        "application_fee_percent",
        "automatic_tax",
        "billing_thresholds",
        "default_source",
        "default_tax_rates",
        "invoice_settings",
        "on_behalf_of",
        "payment_settings",
        "pending_invoice_item_interval",
        "transfer_data",
        "billing_mode",
        "billing_schedules",
        "customer_account",
    )
}
PAUSE = obj(
    {
        "behavior": enum("keep_as_draft", "mark_uncollectible", "void", required=True),
        "resumes_at": integer(),
    },
    nullable=True,
)
COLLECTION = enum("charge_automatically", "send_invoice")
ADD_INVOICE_ITEMS = array(
    obj(
        {
            "price": string(),
            "price_data": obj(
                {
                    "currency": string(required=True),
                    "product": string(required=True),
                    "unit_amount": integer(min=0),
                    "unit_amount_decimal": string(),
                    "tax_behavior": enum("exclusive", "inclusive", "unspecified"),
                }
            ),
            "quantity": integer(min=1),
            "metadata": metadata(),
            "discounts": anything(),
            "tax_rates": anything(),
            "period": anything(),
            "discountable": anything(),
        }
    ),
    max_items=20,
)
CREATE: dict[str, Field] = {
    **_IGNORED,
    **common_params.SUBSCRIPTION,
    "add_invoice_items": ADD_INVOICE_ITEMS,
    "collection_method": COLLECTION,
    "days_until_due": integer(min=0, max=3650),
    "customer": string(required=True),
    "items": array(obj(_ITEM_FIELDS), required=True, max_items=20),
    "default_payment_method": string(),
    "trial_period_days": integer(min=0, max=730),
    "trial_end": timestamp(now_ok=True),
    "trial_from_plan": boolean(),
    "trial_settings": TRIAL_SETTINGS,
    "payment_behavior": enum(
        "allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"
    ),
    "metadata": metadata(),
    "description": string(max_length=500),
    "cancel_at_period_end": boolean(),
    "cancel_at": integer(),
    "discounts": DISCOUNTS,
    "proration_behavior": enum("always_invoice", "create_prorations", "none"),
    "off_session": boolean(),
    "currency": string(),
    "backdate_start_date": integer(),
    "billing_cycle_anchor": integer(),
    "billing_cycle_anchor_config": anything(),
}
UPDATE: dict[str, Field] = {
    **_IGNORED,
    **common_params.SUBSCRIPTION,
    "add_invoice_items": ADD_INVOICE_ITEMS,
    "items": array(
        obj({**_ITEM_FIELDS, "id": string(), "deleted": boolean(), "clear_usage": boolean()}),
        max_items=20,
    ),
    "default_payment_method": string(nullable=True),
    "trial_end": timestamp(now_ok=True),
    "trial_from_plan": boolean(),
    "trial_settings": TRIAL_SETTINGS,
    "payment_behavior": enum(
        "allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"
    ),
    "metadata": metadata(),
    "description": string(nullable=True, max_length=500),
    "cancel_at_period_end": boolean(),
    "cancel_at": timestamp(nullable=True),
    "cancellation_details": obj(
        {
            "comment": string(nullable=True),
            "feedback_option": anything(),
            "feedback": enum(
                "customer_service",
                "low_quality",
                "missing_features",
                "other",
                "switched_service",
                "too_complex",
                "too_expensive",
                "unused",
                nullable=True,
            ),
        }
    ),
    "discounts": array(
        obj({"coupon": string(), "promotion_code": string(), "discount": string()}),
        nullable=True,
    ),
    "proration_behavior": enum("always_invoice", "create_prorations", "none"),
    "proration_date": integer(),
    "off_session": boolean(),
    "pause_collection": PAUSE,
    "billing_cycle_anchor": enum("now", "unchanged"),
    "collection_method": COLLECTION,
    "days_until_due": integer(min=0, max=3650, nullable=True),
}
CANCEL: dict[str, Field] = {
    "invoice_now": boolean(),
    "prorate": boolean(),
    "cancellation_details": obj(
        {
            "comment": string(nullable=True),
            "feedback": string(nullable=True),
            "feedback_option": anything(),
        }
    ),
}
LIST: dict[str, Field] = {
    "customer": string(),
    "price": string(),
    "plan": string(),
    "status": enum(
        "active",
        "all",
        "canceled",
        "ended",
        "incomplete",
        "incomplete_expired",
        "past_due",
        "paused",
        "trialing",
        "unpaid",
    ),
    "created": range_filter(),
    "current_period_start": range_filter(),
    "current_period_end": range_filter(),
    "test_clock": string(),
    "collection_method": enum("charge_automatically", "send_invoice"),
    "automatic_tax": anything(),
    "customer_account": string(),
}


def _items(
    call: Call, raw_items: list[dict[str, Any]]
) -> list[tuple[StripeObject, int, dict[str, str]]]:
    """Resolve `items[n][price|price_data]` to stored prices (creating inline ones)."""
    resolved = []
    for index, entry in enumerate(raw_items):
        price = _price_of(call, entry, index)
        refuse_quantity(price, entry, f"items[{index}]")
        resolved.append((price, entry.get("quantity", 1), _meta(entry)))
    return resolved


def _one_time_items(call: Call, raw: list[dict[str, Any]]) -> list[tuple[StripeObject, int]]:
    """`add_invoice_items[n]`: one-time prices billed once, on the next invoice."""
    found = []
    for index, entry in enumerate(raw):
        where = f"add_invoice_items[{index}]"
        price = _price_of(call, entry, index, where=where, recurring=False)
        found.append((price, int(entry.get("quantity", 1))))
    return found


def _meta(entry: dict[str, Any]) -> dict[str, str]:
    return apply_metadata({}, entry.get("metadata") or {})


def _price_of(
    call: Call,
    entry: dict[str, Any],
    index: int,
    *,
    where: str | None = None,
    recurring: bool = True,
) -> StripeObject:
    """The price of `items[n]` (or another list's entry): `price`, its legacy name `plan`, or
    `price_data` (an inactive inline price). `recurring` says which kind the list takes."""
    where = where or f"items[{index}]"
    if entry.get("plan") and not entry.get("price"):
        entry = {**entry, "price": entry["plan"]}
    if entry.get("price") and entry.get("price_data"):
        raise invalid_request(
            "You may only specify one of these parameters: price, price_data.",
            param=f"{where}[price]",
        )
    if entry.get("price"):
        price = call.require("price", entry["price"], param=f"{where}[price]")
    elif entry.get("price_data"):
        data = dict(entry["price_data"])
        call.require("product", data["product"], param=f"{where}[price_data][product]")
        if not recurring:
            data.pop("recurring", None)
        price = new_price(call, data)
        call.state.update(price, {"active": False, "_inline": True})  # price_data: for this use
    else:
        raise invalid_request(
            f"Missing required param: {where}[price].",
            param=f"{where}[price]",
            code="parameter_missing",
        )
    if not recurring and price.get("recurring"):
        raise invalid_request(
            "The price specified is a recurring price; this field only accepts one-time prices.",
            param=f"{where}[price]",
        )
    return price


def _trial_end(call: Call, p: dict[str, Any], prices: list[StripeObject], now: int) -> int | None:
    if "trial_end" in p and "trial_period_days" in p:
        raise invalid_request(
            "You may only specify one of these parameters: trial_end, trial_period_days.",
            param="trial_end",
        )
    if p.get("trial_end") == "now":
        return None
    if "trial_end" in p:
        if int(p["trial_end"]) <= now:
            raise invalid_request(
                "Invalid timestamp: must be an integer Unix timestamp in the future.",
                param="trial_end",
            )
        return int(p["trial_end"])
    days = p.get("trial_period_days")
    if days is None and p.get("trial_from_plan"):
        days = next(
            (
                int(pr["recurring"].get("trial_period_days") or 0)
                for pr in prices
                if pr.get("recurring")
            ),
            0,
        )
    return now + int(days) * 86_400 if days else None


@router.post("/v1/subscriptions", CREATE)
def create_subscription(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    remember_base(state, call.request)
    customer = call.require("customer", p["customer"], param="customer")
    if not p["items"]:
        raise invalid_request(
            "Missing required param: items.", param="items", code="parameter_missing"
        )
    if p.get("payment_behavior") == "pending_if_incomplete":
        raise invalid_request(
            "payment_behavior=pending_if_incomplete is only supported when updating a "
            "subscription.",
            param="payment_behavior",
        )
    collection, days_until_due = sending.collection_settings(p, "charge_automatically", None)
    lifecycle.check_payment_method(
        state, p.get("default_payment_method"), customer, param="default_payment_method"
    )
    save_default = _save_default_payment_method(p)
    items = _items(call, p["items"])
    if p.get("currency") and str(p["currency"]).lower() != items[0][0]["currency"]:
        raise invalid_request(
            f"The prices are in {items[0][0]['currency']}, not {p['currency']}.",
            param="currency",
        )
    one_time = _one_time_items(call, p.get("add_invoice_items") or [])
    now = state.now_for(customer)
    trial_end = _trial_end(call, p, [price for price, _, _ in items], now)
    found = discounting.resolve(state, p.get("discounts", []), customer=customer["id"])
    anchor = p.get("billing_cycle_anchor")
    if anchor is not None:
        lifecycle.check_anchor(items[0][0], int(anchor), now, trialing=trial_end is not None)
    return lifecycle.start_subscription(
        state,
        customer=customer,
        items=items,
        default_payment_method=p.get("default_payment_method"),
        trial_end=trial_end,
        payment_behavior=p.get("payment_behavior", "allow_incomplete"),
        metadata=apply_metadata({}, p.get("metadata", {})),
        description=p.get("description"),
        cancel_at_period_end=bool(p.get("cancel_at_period_end", False)),
        cancel_at=p.get("cancel_at"),
        discounts=found,
        off_session=bool(p.get("off_session", False)),
        trial_settings=p.get("trial_settings"),
        billing_cycle_anchor=anchor,
        proration_behavior=p.get("proration_behavior", "create_prorations"),
        extra_items=one_time,
        save_default_payment_method=save_default,
        collection_method=collection,
        days_until_due=days_until_due,
    )


def _save_default_payment_method(p: dict[str, Any]) -> str:
    """`payment_settings[save_default_payment_method]`: `off` or `on_subscription`."""
    given = p.get("payment_settings")
    value = given.get("save_default_payment_method") if isinstance(given, dict) else None
    if value not in (None, "off", "on_subscription"):
        raise invalid_request(
            "Invalid payment_settings[save_default_payment_method]: must be one of off, "
            "on_subscription",
            param="payment_settings[save_default_payment_method]",
        )
    return str(value or "off")


@router.get("/v1/subscriptions/{id}")
def retrieve_subscription(call: Call) -> StripeObject:
    return call.require("subscription", call.path["id"])


@router.post("/v1/subscriptions/{id}", UPDATE)
def update_subscription(call: Call) -> StripeObject:
    """Update; with `payment_behavior=error_if_incomplete`, a change whose invoice cannot be
    paid is not made at all and answers Stripe's 402 card error."""
    sub = call.require("subscription", call.path["id"])
    if call.params.get("payment_behavior") != "error_if_incomplete":
        return _update(call, sub)
    state = call.state
    before = copy.deepcopy(sub)
    kinds = ("invoice", "invoiceitem", "invoice_payment", "discount")
    known = {kind: set(state.objects.get(kind, {})) for kind in kinds}
    refused: dict[str, Any] | None = None
    with held_events(state) as held:
        _update(call, sub)
        latest = state.get("invoice", str(sub.get("latest_invoice")))
        if (
            latest is not None
            and latest["id"] not in known["invoice"]
            and latest["status"] != "paid"
        ):
            intent = invoicing.open_payment_intent(state, latest)
            found = state.get("payment_intent", intent) if intent else None
            refused = (
                payments_port.outcome_of(state, found).error if found is not None else None
            ) or {"message": "The subscription change could not be paid."}
            payments_port.cancel(state, intent)
            for kind in kinds:
                for object_id in set(state.objects.get(kind, {})) - known[kind]:
                    state.remove(kind, object_id)
                    held.drop_about(object_id)
            sub.clear()
            sub.update(before)
            state.touch()
            held.drop_about(sub["id"])
            lifecycle.reschedule(state, sub)
    if refused is not None:
        raise card_error(
            str(refused.get("message")),
            code=str(refused.get("code") or "card_declined"),
            decline_code=refused.get("decline_code"),
            extra={k: v for k, v in refused.items() if k in ("payment_intent", "charge")},
        )
    return sub


def _update(call: Call, sub: StripeObject) -> StripeObject:
    state = call.state
    remember_base(state, call.request)
    p = call.params
    customer = state.require("customer", sub["customer"], deleted_ok=True)
    if sub["status"] in lifecycle.ENDED:
        allowed = {"metadata", "cancellation_details", "expand"}
        if set(p) - allowed:
            raise invalid_request(
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
    collection, days_until_due = sending.collection_settings(
        p, sub["collection_method"], sub.get("days_until_due")
    )
    if p.get("payment_behavior") in ("pending_if_incomplete", "default_incomplete"):
        raise invalid_request(
            f"payment_behavior={p['payment_behavior']} is not supported by the sandbox on update; "
            "use allow_incomplete or error_if_incomplete.",
            param="payment_behavior",
        )
    if "cancel_at_period_end" in p and p.get("cancel_at") is not None:
        raise invalid_request(
            "You may only specify one of these parameters: cancel_at, cancel_at_period_end.",
            param="cancel_at",
        )
    if p.get("default_payment_method"):
        lifecycle.check_payment_method(
            state, p["default_payment_method"], customer, param="default_payment_method"
        )
    # Validate items before changing anything.
    new_items = None
    if "items" in p:
        new_items = updated_items(call, sub, p["items"])
    one_time = _one_time_items(call, p.get("add_invoice_items") or [])
    for price, _ in one_time:
        if price["currency"] != sub["currency"]:
            raise invalid_request(
                f"The subscription is billed in {sub['currency']}, not {price['currency']}.",
                param="add_invoice_items",
            )
    found_discounts = None
    if "discounts" in p and p["discounts"] is not None:
        found_discounts = discounting.resolve(state, p["discounts"], customer=customer["id"])
    now = state.now_for(sub)
    changes: dict[str, Any] = {}
    invoice: StripeObject | None = None
    if "metadata" in p:
        changes["metadata"] = apply_metadata(sub["metadata"], p["metadata"])
    if "collection_method" in p or "days_until_due" in p:
        changes.update(collection_method=collection, days_until_due=days_until_due)
    if "description" in p:
        changes["description"] = p["description"]
    if "default_payment_method" in p:
        changes["default_payment_method"] = p["default_payment_method"]
    if "cancellation_details" in p:
        details = dict(sub["cancellation_details"])
        details.update(p["cancellation_details"])
        changes["cancellation_details"] = details
    if "trial_settings" in p:
        behavior = p["trial_settings"]["end_behavior"].get("missing_payment_method")
        if behavior is not None:
            changes["trial_settings"] = {"end_behavior": {"missing_payment_method": behavior}}
    _, period_end = lifecycle.current_period(sub)
    if "cancel_at_period_end" in p:
        if p["cancel_at_period_end"]:
            details = dict(changes.get("cancellation_details") or sub["cancellation_details"])
            details["reason"] = "cancellation_requested"
            changes.update(
                cancel_at_period_end=True,
                cancel_at=period_end,
                canceled_at=now,
                cancellation_details=details,
            )
        else:
            details = dict(changes.get("cancellation_details") or sub["cancellation_details"])
            details["reason"] = None
            changes.update(
                cancel_at_period_end=False,
                cancel_at=None,
                canceled_at=None,
                cancellation_details=details,
            )
    if "cancel_at" in p:
        if p["cancel_at"] is None:
            changes.update(cancel_at=None, canceled_at=None, cancel_at_period_end=False)
        else:
            if int(p["cancel_at"]) <= now:
                raise invalid_request("cancel_at must be in the future.", param="cancel_at")
            changes.update(
                cancel_at=int(p["cancel_at"]),
                canceled_at=now,
                cancel_at_period_end=int(p["cancel_at"]) == period_end,
            )
    if found_discounts is not None or ("discounts" in p and p["discounts"] is None):
        ids = [
            discounting.create_discount(
                state, coupon, promo, customer=customer["id"], subscription=sub["id"]
            )["id"]
            for coupon, promo in (found_discounts or [])
        ]
        changes["discounts"] = ids
    for price, quantity in one_time:
        # Billed once, on the next invoice (or the invoice this change makes now).
        line = invoicing.price_line(
            state, price, quantity, period=(now, now), subscription=sub["id"]
        )
        invoicing.add_invoice_item(
            state, customer=sub["customer"], line=line, subscription=sub["id"], proration=False
        )
    reset_anchor = p.get("billing_cycle_anchor") == "now"
    if reset_anchor and sub["status"] not in ("active", "past_due"):
        raise invalid_request(
            "billing_cycle_anchor=now needs an active or past_due subscription.",
            param="billing_cycle_anchor",
        )
    if reset_anchor and new_items is None:
        new_items = [
            (item, item["price"], int(item["quantity"]), dict(item["metadata"]))
            for item in lifecycle.items_of(sub)
        ]
    if new_items is not None:
        item_changes, invoice = lifecycle.change_items(
            state,
            sub,
            new_items,
            proration_behavior=p.get("proration_behavior", "create_prorations"),
            proration_date=p.get("proration_date"),
            reset_anchor=reset_anchor,
        )
        changes.update(item_changes)
    if p.get("trial_end") == "now" and sub["status"] == "trialing":
        trial_changes, invoice = lifecycle.end_trial_now(state, sub)
        changes.update(trial_changes)
        state.emit("customer.subscription.trial_will_end", sub)
    elif "trial_end" in p and p["trial_end"] != "now":
        new_end = int(p["trial_end"])
        if new_end <= now:
            raise invalid_request("trial_end must be in the future.", param="trial_end")
        if sub["status"] not in ("trialing", "active"):
            raise invalid_request(
                "A trial can only be set on an active or trialing subscription.", param="trial_end"
            )
        items = [dict(i, current_period_end=new_end) for i in lifecycle.items_of(sub)]
        changes.update(
            trial_end=new_end,
            trial_start=sub.get("trial_start") or now,
            status="trialing",
            billing_cycle_anchor=new_end,
            items=dict(sub["items"], data=items),
        )
        if changes.get("cancel_at_period_end"):
            changes["cancel_at"] = new_end
    if "pause_collection" in p:
        changes["pause_collection"] = (
            None
            if p["pause_collection"] is None
            else {
                "behavior": p["pause_collection"]["behavior"],
                "resumes_at": p["pause_collection"].get("resumes_at"),
            }
        )
    previous = state.update(sub, changes)
    if previous:
        state.emit("customer.subscription.updated", sub, previous)
    lifecycle.reschedule(state, sub)
    if invoice is not None:
        lifecycle.settle_change_invoice(state, sub, invoice)
    return sub


def updated_items(
    call: Call, sub: StripeObject, raw_items: list[dict[str, Any]]
) -> list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]]:
    """Merge `items[n][id|price|quantity|deleted]` into the current items."""
    current = {i["id"]: i for i in lifecycle.items_of(sub)}
    result: dict[str, tuple[StripeObject | None, StripeObject, int, dict[str, str]]] = {
        item_id: (item, item["price"], int(item["quantity"]), dict(item["metadata"]))
        for item_id, item in current.items()
    }
    added: list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]] = []
    for index, entry in enumerate(raw_items):
        item_id = entry.get("id")
        if item_id is not None:
            existing = current.get(item_id)
            if existing is None:
                raise invalid_request(
                    f"No such subscription item: '{item_id}'",
                    param=f"items[{index}][id]",
                    code="resource_missing",
                )
            if entry.get("deleted"):
                result.pop(item_id, None)
                continue
            price = (
                _price_of(call, entry, index)
                if entry.get("price") or entry.get("plan") or entry.get("price_data")
                else existing["price"]
            )
            meta = dict(existing["metadata"])
            if "metadata" in entry:
                meta = apply_metadata(meta, entry["metadata"])
            result[item_id] = (
                existing,
                price,
                int(entry["quantity"] if "quantity" in entry else existing["quantity"]),
                meta,
            )
        else:
            if entry.get("deleted"):
                raise invalid_request(
                    "You must specify the subscription item id to delete it.",
                    param=f"items[{index}][id]",
                )
            price = _price_of(call, entry, index)
            for _, old_price, _, _ in list(result.values()):
                if old_price["id"] == price["id"]:
                    raise invalid_request(
                        "Cannot add multiple subscription items with the same price.",
                        param=f"items[{index}][price]",
                    )
            added.append((None, price, int(entry.get("quantity", 1)), _meta(entry)))
    merged = list(result.values()) + added
    if not merged:
        raise invalid_request(
            "A subscription must have at least one item; cancel it instead.", param="items"
        )
    return merged


@router.delete("/v1/subscriptions/{id}", CANCEL)
def cancel_subscription(call: Call) -> StripeObject:
    sub = call.require("subscription", call.path["id"])
    p = call.params
    details = p.get("cancellation_details") or {}
    return lifecycle.cancel_now(
        call.state,
        sub,
        prorate_unused=bool(p.get("prorate", False)),
        invoice_now=bool(p.get("invoice_now", False)),
        comment=details.get("comment"),
        feedback=details.get("feedback"),
    )


@router.post(
    "/v1/subscriptions/{id}/resume",
    {
        "billing_cycle_anchor": enum("now", "unchanged"),
        "proration_behavior": enum("always_invoice", "create_prorations", "none"),
        "proration_date": integer(),
        "payment_behavior": enum(
            "allow_incomplete", "error_if_incomplete", "pending_if_incomplete"
        ),
    },
)
def resume_subscription(call: Call) -> StripeObject:
    sub = call.require("subscription", call.path["id"])
    return lifecycle.resume(call.state, sub)


@router.delete("/v1/subscriptions/{id}/discount")
def delete_subscription_discount(call: Call) -> StripeObject:
    sub = call.require("subscription", call.path["id"])
    if not sub["discounts"]:
        raise invalid_request(
            "This subscription has no discount.", code="resource_missing", status=404
        )
    discount = call.require("discount", sub["discounts"][0])
    previous = call.state.update(sub, {"discounts": sub["discounts"][1:]})
    call.emit("customer.subscription.updated", sub, previous)
    return {"id": discount["id"], "object": "discount", "deleted": True}


def _matches(sub: StripeObject, p: dict[str, Any]) -> bool:
    status = p.get("status")
    if status is None and sub["status"] in ("canceled", "incomplete_expired"):
        return False
    if status == "ended" and sub["status"] not in ("canceled", "incomplete_expired"):
        return False
    if status not in (None, "all", "ended") and sub["status"] != status:
        return False
    if "customer" in p and sub["customer"] != p["customer"]:
        return False
    price = p.get("price") or p.get("plan")
    if price and all(i["price"]["id"] != price for i in lifecycle.items_of(sub)):
        return False
    if "test_clock" in p and sub.get("test_clock") != p["test_clock"]:
        return False
    start, end = lifecycle.current_period(sub)
    return (
        in_range(sub["created"], p.get("created"))
        and in_range(start, p.get("current_period_start"))
        and in_range(end, p.get("current_period_end"))
    )


@router.get("/v1/subscriptions", LIST, list=True)
def list_subscriptions(call: Call) -> StripeObject:
    found = [
        s for s in call.state.all("subscription", newest_first=True) if _matches(s, call.params)
    ]
    return call.list_response(found)


@router.get("/v1/subscriptions/search", search=True)
def search_subscriptions(call: Call) -> StripeObject:
    return search_response(
        call,
        call.state.all("subscription", newest_first=True),
        {
            "status": lambda s: s.get("status"),
            "created": lambda s: s.get("created"),
            "customer": lambda s: s.get("customer"),
        },
    )


@router.expander("subscription", "discounts")
def _expand_subscription_discounts(state: SandboxState, sub: StripeObject) -> list[Any]:
    """`expand[]=discounts`: the Discount objects instead of their ids."""
    return [state.get("discount", d) or d for d in sub.get("discounts") or []]


# --- subscription items -----------------------------------------------------------------------


def _find_item(call: Call, item_id: str) -> tuple[StripeObject, StripeObject]:
    for sub in call.state.all("subscription"):
        for item in lifecycle.items_of(sub):
            if item["id"] == item_id:
                return sub, item
    raise invalid_request(
        f"No such subscription item: '{item_id}'", param="id", code="resource_missing", status=404
    )


@router.get("/v1/subscription_items", {"subscription": string(required=True)}, list=True)
def list_subscription_items(call: Call) -> StripeObject:
    sub = call.require("subscription", call.params["subscription"], param="subscription")
    return call.list_response(list(reversed(lifecycle.items_of(sub))))


@router.get("/v1/subscription_items/{id}")
def retrieve_subscription_item(call: Call) -> StripeObject:
    return _find_item(call, call.path["id"])[1]


# --- time -----------------------------------------------------------------------------------------

router.timer(lifecycle.PERIOD_END)(lifecycle.period_end)
router.timer(lifecycle.TRIAL_WILL_END)(lifecycle.trial_will_end)
router.timer(lifecycle.UPCOMING)(lifecycle.upcoming_invoice)
router.timer(lifecycle.INCOMPLETE_EXPIRY)(lifecycle.incomplete_expiry)
router.timer(lifecycle.CANCEL_AT)(lifecycle.cancel_at_reached)
router.timer(invoicing.FINALIZE_TIMER)(lifecycle.finalize_timer)
router.timer(invoicing.RETRY_TIMER)(lifecycle.retry_timer)


# --- the sandbox's own billing settings (not Stripe's API) --------------------------------------

SETTINGS: dict[str, Field] = {
    "retry_days": array(integer(min=0, max=60), max_items=8),
    "after_final_failure": enum("canceled", "unpaid", "past_due"),
    "renewal_finalize_delay": integer(min=0, max=72 * 3600),
    "incomplete_expiry": integer(min=60, max=30 * 86_400),
    "trial_will_end_notice": integer(min=0, max=30 * 86_400),
    "upcoming_notice": integer(min=0, max=30 * 86_400),
    "reset": boolean(),
}


@router.post("/v1/test_helpers/billing/settings", SETTINGS)
def update_billing_settings(call: Call) -> StripeObject:
    """How failed payments are retried and what happens after the last retry (see FRAMEWORK.md)."""
    changes = dict(call.params)
    changes.pop("expand", None)
    if changes.pop("reset", False):
        changes = {**DEFAULTS, **changes}
    if "retry_days" in changes:
        days = changes["retry_days"]
        if days != sorted(days):
            raise invalid_request("retry_days must be in increasing order.", param="retry_days")
    return {"object": "sandbox.billing_settings", **set_billing_settings(call.state, changes)}


@router.get("/v1/test_helpers/billing/settings")
def get_billing_settings(call: Call) -> StripeObject:
    return {"object": "sandbox.billing_settings", **set_billing_settings(call.state, {})}
