"""Checkout Sessions: create, retrieve, list, expire, line items, the hosted payment page, and
the test helper that completes a session without a browser.

Completing a session creates what Stripe's Checkout creates, with the same events:

- subscription mode: `customer.created`, `payment_method.attached`,
  `customer.subscription.created` (incomplete), `invoice.created`, `invoice.finalized`, the
  payment's events, `invoice_payment.paid`, `invoice.paid`, `invoice.payment_succeeded`,
  `customer.subscription.updated` (active), `checkout.session.completed`. A trial or a free
  first invoice gives one `customer.subscription.created` (trialing/active) instead.
- payment mode: a PaymentIntent charged on the chosen method (`payment_intent.*`, `charge.*`),
  then `checkout.session.completed`; a bank debit completes with `payment_status=unpaid` and
  later `checkout.session.async_payment_succeeded` (or `_failed`).
- setup mode: a SetupIntent confirmed with the method, then `checkout.session.completed`.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from starlette.responses import RedirectResponse, Response

from billfold_sandbox.billing import discounts as discounting
from billfold_sandbox.billing import invoicing, lifecycle, payments_port
from billfold_sandbox.billing.metering import is_metered, refuse_quantity
from billfold_sandbox.billing.periods import add_intervals, prorate
from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.pages import remember_base, render_page, sandbox_base_url
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
)
from billfold_sandbox.resources.customers import create_customer
from billfold_sandbox.resources.prices import new_price
from billfold_sandbox.resources.subscriptions import TRIAL_SETTINGS
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject, Timer

router = SandboxRouter()

SESSION = "checkout.session"
EXPIRE_TIMER = "checkout.session.expire"
DAY = 86_400

PRICE_DATA = obj(
    {
        "currency": string(required=True),
        "product": string(),
        "product_data": obj(
            {
                "name": string(required=True),
                "description": string(),
                "images": array(string()),
                "metadata": metadata(),
                "tax_code": string(),
                "unit_label": string(),
                "tax_details": anything(),
            }
        ),
        "unit_amount": integer(min=0),
        "unit_amount_decimal": string(),
        "recurring": obj(
            {
                "interval": enum("day", "week", "month", "year", required=True),
                "interval_count": integer(min=1),
            }
        ),
        "tax_behavior": enum("exclusive", "inclusive", "unspecified"),
    }
)
PAYMENT_METHOD_TYPES = ("card", "us_bank_account", "link")
CREATE: dict[str, Field] = {
    "mode": enum("payment", "setup", "subscription"),
    "line_items": array(
        obj(
            {
                "price": string(),
                "price_data": PRICE_DATA,
                "quantity": integer(min=0, max=999_999),
                "adjustable_quantity": anything(),
                "dynamic_tax_rates": anything(),
                "tax_rates": anything(),
                "metadata": metadata(),
            }
        ),
        max_items=100,
    ),
    "customer": string(),
    "customer_email": string(max_length=800),
    "customer_creation": enum("always", "if_required"),
    "customer_update": anything(),
    "client_reference_id": string(max_length=200),
    "metadata": metadata(),
    "subscription_data": obj(
        {
            "metadata": metadata(),
            "trial_period_days": integer(min=1, max=730),
            "trial_end": integer(),
            "description": string(max_length=500),
            "trial_settings": TRIAL_SETTINGS,
            "default_tax_rates": anything(),
            "billing_cycle_anchor": integer(),
            "proration_behavior": enum("create_prorations", "none"),
            "application_fee_percent": anything(),
            "on_behalf_of": anything(),
            "transfer_data": anything(),
            "invoice_settings": anything(),
            "billing_mode": anything(),
            "billing_cycle_anchor_config": anything(),
            "pending_invoice_item_interval": anything(),
        }
    ),
    "payment_intent_data": obj(
        {
            "metadata": metadata(),
            "description": string(max_length=1000),
            "setup_future_usage": enum("off_session", "on_session"),
            "capture_method": enum("automatic", "automatic_async", "manual"),
            "receipt_email": string(),
            "statement_descriptor": string(max_length=22),
            "statement_descriptor_suffix": string(max_length=22),
            "shipping": anything(),
            "transfer_data": anything(),
            "transfer_group": anything(),
            "application_fee_amount": anything(),
            "on_behalf_of": anything(),
        }
    ),
    "setup_intent_data": obj(
        {"metadata": metadata(), "description": string(), "on_behalf_of": anything()}
    ),
    "allow_promotion_codes": boolean(),
    "discounts": array(obj({"coupon": string(), "promotion_code": string()}), max_items=1),
    "success_url": string(max_length=5000),
    "cancel_url": string(max_length=5000),
    "return_url": string(max_length=5000),
    "ui_mode": enum("hosted", "embedded", "custom"),
    "payment_method_types": array(string()),
    "payment_method_collection": enum("always", "if_required"),
    "payment_method_options": anything(),
    "payment_method_configuration": anything(),
    "expires_at": integer(),
    "currency": string(),
    "locale": string(),
    "billing_address_collection": enum("auto", "required"),
    "submit_type": enum("auto", "book", "donate", "pay", "subscribe"),
    "automatic_tax": anything(),
    "tax_id_collection": anything(),
    "phone_number_collection": anything(),
    "consent_collection": anything(),
    "custom_fields": anything(),
    "custom_text": anything(),
    "invoice_creation": obj(
        {
            "enabled": boolean(required=True),
            "invoice_data": obj(
                {
                    "description": string(max_length=1500),
                    "footer": string(max_length=5000),
                    "metadata": metadata(),
                    "account_tax_ids": anything(),
                    "custom_fields": anything(),
                    "issuer": anything(),
                    "rendering_options": anything(),
                }
            ),
        }
    ),
    "shipping_address_collection": anything(),
    "shipping_options": anything(),
    "after_expiration": anything(),
    "adaptive_pricing": anything(),
    "saved_payment_method_options": anything(),
    "redirect_on_completion": enum("always", "if_required", "never"),
    **{
        name: anything()
        for name in (
            "allowed_payment_method_types",
            "branding_settings",
            "customer_account",
            "excluded_payment_method_types",
            "integration_identifier",
            "managed_payments",
            "name_collection",
            "optional_items",
            "origin_context",
            "payment_method_data",
            "permissions",
            "wallet_options",
        )
    },
}
LIST: dict[str, Field] = {
    "customer": string(),
    "status": enum("complete", "expired", "open"),
    "subscription": string(),
    "payment_intent": string(),
    "payment_link": string(),
    "created": range_filter(),
    "customer_details": obj({"email": string(required=True)}),
    "customer_account": string(),
}
COMPLETE: dict[str, Field] = {
    "payment_method": string(),
    "email": string(max_length=800),
    "name": string(max_length=200),
    "promotion_code": string(),
}


# --- creating -----------------------------------------------------------------------------------


def _line_items(
    call: Call, raw: list[dict[str, Any]], mode: str
) -> list[tuple[StripeObject, int, dict[str, str]]]:
    items = []
    for index, entry in enumerate(raw):
        where = f"line_items[{index}]"
        if entry.get("price") and entry.get("price_data"):
            raise invalid_request(
                "You may only specify one of these parameters: price, price_data.",
                param=f"{where}[price]",
            )
        if entry.get("price"):
            price = call.require("price", entry["price"], param=f"{where}[price]")
            if not price.get("active", True):
                raise invalid_request(
                    f"The price `{price['id']}` is not active.", param=f"{where}[price]"
                )
        elif entry.get("price_data"):
            data = dict(entry["price_data"])
            if mode == "payment" and data.get("recurring"):
                raise invalid_request(
                    "You specified `payment` mode but passed a recurring price. Either switch to "
                    "`subscription` mode or use only one-time prices.",
                    param=f"{where}[price_data][recurring]",
                )
            if not data.get("product") and not data.get("product_data"):
                raise invalid_request(
                    "You must specify either `product` or `product_data` when creating a price.",
                    param=f"{where}[price_data][product_data]",
                )
            price = new_price(call, data)
            call.state.update(price, {"active": False})
        else:
            raise invalid_request(
                f"Missing required param: {where}[price].",
                param=f"{where}[price]",
                code="parameter_missing",
            )
        refuse_quantity(price, entry, where)
        if "quantity" not in entry and not is_metered(price):
            raise invalid_request(
                f"Quantity is required. Add `quantity` to `{where}`.",
                param=f"{where}[quantity]",
                code="parameter_missing",
            )
        if mode == "payment" and price.get("recurring"):
            raise invalid_request(
                "You specified `payment` mode but passed a recurring price. Either switch to "
                "`subscription` mode or use only one-time prices.",
                param=f"{where}[price]",
            )
        items.append(
            (price, int(entry.get("quantity", 0)), apply_metadata({}, entry.get("metadata") or {}))
        )
    return items


def _item_object(
    state: SandboxState, price: StripeObject, quantity: int, discount: int
) -> StripeObject:
    subtotal = int(price.get("unit_amount") or 0) * quantity
    return {
        "id": state.new_id("li"),
        "object": "item",
        "adjustable_quantity": None,
        "amount_discount": discount,
        "amount_subtotal": subtotal,
        "amount_tax": 0,
        "amount_total": subtotal - discount,
        "currency": price["currency"],
        "description": invoicing.product_name(state, price),
        "metadata": {},
        "price": dict(price),
        "quantity": quantity,
    }


def _amounts(state: SandboxState, session: StripeObject) -> tuple[int, int, int]:
    """(subtotal, discount, total) of what is due today: a trial makes recurring items free, a
    future billing cycle anchor bills them prorated up to the anchor."""
    data = session.get("_subscription_data") or {}
    trial = bool(data.get("trial_period_days")) or bool(data.get("trial_end"))
    anchor = data.get("billing_cycle_anchor")
    subtotal = 0
    for price_id, quantity in session["_items"]:
        price = state.require("price", price_id)
        full = int(price.get("unit_amount") or 0) * int(quantity)
        recurring = price.get("recurring")
        if trial and recurring:
            continue
        if anchor is not None and recurring:
            if data.get("proration_behavior") == "none":
                continue
            start = add_intervals(
                int(anchor), recurring["interval"], int(recurring.get("interval_count") or 1), -1
            )
            full = prorate(full, start, int(anchor), int(session["created"]))
        subtotal += full
    discount = 0
    for entry in session.get("_discounts") or []:
        coupon = state.get("coupon", entry["coupon"])
        if coupon is None:
            continue
        if coupon.get("percent_off") is not None:
            discount += round((subtotal - discount) * float(coupon["percent_off"]) / 100)
        elif coupon.get("currency") == session["currency"]:
            discount += min(int(coupon["amount_off"]), subtotal - discount)
    return subtotal, discount, subtotal - discount


def _refresh_amounts(state: SandboxState, session: StripeObject) -> None:
    if session["mode"] == "setup":
        return
    subtotal, discount, total = _amounts(state, session)
    session.update(
        amount_subtotal=subtotal,
        amount_total=total,
        total_details={"amount_discount": discount, "amount_shipping": 0, "amount_tax": 0},
        discounts=[
            {"coupon": d["coupon"], "promotion_code": d.get("promotion_code")}
            for d in session.get("_discounts") or []
        ],
    )
    state.touch()


@router.post("/v1/checkout/sessions", CREATE)
def create_session(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    remember_base(state, call.request)
    mode = p.get("mode")
    if mode is None:
        raise invalid_request(
            "Missing required param: mode.", param="mode", code="parameter_missing"
        )
    ui_mode = p.get("ui_mode", "hosted")
    if ui_mode != "hosted" and p.get("success_url"):
        raise invalid_request(
            f"`success_url` is not supported with `ui_mode={ui_mode}`; use `return_url`.",
            param="success_url",
        )
    if ui_mode == "hosted" and p.get("return_url"):
        raise invalid_request(
            "`return_url` can only be used with `ui_mode=embedded` or `ui_mode=custom`.",
            param="return_url",
        )
    for name in ("success_url", "cancel_url", "return_url"):
        url = p.get(name)
        if url is not None and not url.startswith(("http://", "https://")):
            raise invalid_request("Not a valid URL", param=name, code="url_invalid")
    if p.get("customer") and p.get("customer_email"):
        raise invalid_request(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    customer = (
        call.require("customer", p["customer"], param="customer") if p.get("customer") else None
    )
    if p.get("customer_creation") and mode == "subscription":
        raise invalid_request(
            "`customer_creation` can only be used in `payment` and `setup` mode.",
            param="customer_creation",
        )
    if p.get("customer_creation") and customer is not None:
        raise invalid_request(
            "You may only specify one of these parameters: customer, customer_creation.",
            param="customer_creation",
        )
    if p.get("allow_promotion_codes") and p.get("discounts"):
        raise invalid_request(
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
            param="allow_promotion_codes",
        )
    if "subscription_data" in p and mode != "subscription":
        raise invalid_request(
            "You can only specify `subscription_data` in `subscription` mode.",
            param="subscription_data",
        )
    if "payment_intent_data" in p and mode != "payment":
        raise invalid_request(
            "You can only specify `payment_intent_data` in `payment` mode.",
            param="payment_intent_data",
        )
    if "invoice_creation" in p and mode != "payment":
        raise invalid_request(
            "You can only specify `invoice_creation` in `payment` mode.",
            param="invoice_creation",
        )
    if "setup_intent_data" in p and mode != "setup":
        raise invalid_request(
            "You can only specify `setup_intent_data` in `setup` mode.", param="setup_intent_data"
        )
    types = p.get("payment_method_types") or ["card"]
    for index, kind in enumerate(types):
        if kind not in PAYMENT_METHOD_TYPES:
            raise invalid_request(
                f"Invalid payment_method_types[{index}]: must be one of "
                f"{', '.join(PAYMENT_METHOD_TYPES)} in the sandbox.",
                param=f"payment_method_types[{index}]",
            )
    raw_items = p.get("line_items") or []
    if mode == "setup" and raw_items:
        raise invalid_request("You cannot pass `line_items` in `setup` mode.", param="line_items")
    if mode != "setup" and not raw_items:
        raise invalid_request(
            f"`line_items` is required in `{mode}` mode.",
            param="line_items",
            code="parameter_missing",
        )
    sub_data = p.get("subscription_data") or {}
    if sub_data.get("trial_period_days") and sub_data.get("trial_end"):
        raise invalid_request(
            "You may only specify one of these parameters: subscription_data[trial_end], "
            "subscription_data[trial_period_days].",
            param="subscription_data[trial_end]",
        )
    clock = customer.get("test_clock") if customer else None
    now = state.now(clock)
    expires_at = p.get("expires_at", now + DAY)
    if not now + 1800 <= expires_at <= now + DAY:
        raise invalid_request(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout "
            "Session creation.",
            param="expires_at",
        )
    found = discounting.resolve(
        state, p.get("discounts", []), customer=customer["id"] if customer else None
    )
    items = _line_items(call, raw_items, mode)
    currencies = {price["currency"] for price, _, _ in items}
    if len(currencies) > 1:
        raise invalid_request("All line items must use the same currency.", param="line_items")
    if mode == "subscription":
        if not any(price.get("recurring") for price, _, _ in items):
            raise invalid_request(
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
                param="line_items",
            )
        lifecycle.check_prices(
            state,
            [
                (price, f"line_items[{i}][price]")
                for i, (price, _, _) in enumerate(items)
                if price.get("recurring")
            ],
        )
        if sub_data.get("billing_cycle_anchor") is not None:
            recurring = next(price for price, _, _ in items if price.get("recurring"))
            trial = bool(sub_data.get("trial_period_days") or sub_data.get("trial_end"))
            try:
                lifecycle.check_anchor(
                    recurring, int(sub_data["billing_cycle_anchor"]), now, trialing=trial
                )
            except StripeError as exc:
                exc.param = "subscription_data[billing_cycle_anchor]"
                raise
    invoice_data = (p.get("invoice_creation") or {}).get("invoice_data") or {}
    session_id = "cs_test_" + secrets.token_urlsafe(45).replace("-", "a").replace("_", "b")[:58]
    currency = next(iter(currencies)) if currencies else (p.get("currency") or "usd").lower()
    session: StripeObject = {
        "id": session_id,
        "object": SESSION,
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": p.get("allow_promotion_codes"),
        "amount_subtotal": None,
        "amount_total": None,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": p.get("billing_address_collection"),
        "cancel_url": p.get("cancel_url"),
        "client_reference_id": p.get("client_reference_id"),
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": now,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": customer["id"] if customer else None,
        "customer_account": None,
        "customer_creation": p.get("customer_creation", "if_required")
        if mode != "subscription" and customer is None
        else None,
        "customer_details": {
            "address": None,
            "business_name": None,
            "email": customer.get("email") if customer else p.get("customer_email"),
            "individual_name": None,
            "name": customer.get("name") if customer else None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        if (customer is not None or p.get("customer_email"))
        else None,
        "customer_email": p.get("customer_email"),
        "discounts": [],
        "expires_at": expires_at,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": {
            "enabled": bool((p.get("invoice_creation") or {}).get("enabled", False)),
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": invoice_data.get("description"),
                "footer": invoice_data.get("footer"),
                "issuer": None,
                "metadata": apply_metadata({}, invoice_data.get("metadata") or {}),
                "rendering_options": None,
            },
        }
        if mode == "payment"
        else None,
        "livemode": False,
        "locale": p.get("locale"),
        "managed_payments": None,
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "mode": mode,
        "origin_context": None,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": p.get("payment_method_collection", "always")
        if mode == "subscription"
        else None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": list(types),
        "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": p.get("submit_type"),
        "subscription": None,
        "success_url": p.get("success_url"),
        "total_details": None,
        "ui_mode": ui_mode,
        "url": None,
        "wallet_options": None,
        "_items": [[price["id"], quantity] for price, quantity, _ in items],
        "_item_ids": [],
        "_discounts": [
            {"coupon": coupon["id"], "promotion_code": promo["id"] if promo else None}
            for coupon, promo in found
        ],
        "_subscription_data": {
            "metadata": apply_metadata({}, sub_data.get("metadata") or {}),
            "trial_period_days": sub_data.get("trial_period_days"),
            "trial_end": sub_data.get("trial_end"),
            "trial_settings": sub_data.get("trial_settings"),
            "billing_cycle_anchor": sub_data.get("billing_cycle_anchor"),
            "proration_behavior": sub_data.get("proration_behavior", "create_prorations"),
            "description": sub_data.get("description"),
        },
        "_payment_intent_data": {
            "metadata": apply_metadata(
                {}, (p.get("payment_intent_data") or {}).get("metadata") or {}
            ),
            "description": (p.get("payment_intent_data") or {}).get("description"),
            "setup_future_usage": (p.get("payment_intent_data") or {}).get("setup_future_usage"),
            "capture_method": (p.get("payment_intent_data") or {}).get("capture_method"),
        },
        "_setup_intent_data": {
            "metadata": apply_metadata(
                {}, (p.get("setup_intent_data") or {}).get("metadata") or {}
            ),
            "description": (p.get("setup_intent_data") or {}).get("description"),
        },
        "_error": None,
    }
    if ui_mode == "hosted":
        session["url"] = f"{sandbox_base_url(call.request)}/checkout/pay/{session_id}"
    else:
        session["client_secret"] = f"{session_id}_secret_{secrets.token_urlsafe(18)}"
    if mode != "setup":
        discounts_left = _amounts_for_items(state, session)
        session["_item_ids"] = [
            _item_object(state, price, quantity, discount)
            for (price, quantity, _), discount in zip(items, discounts_left, strict=True)
        ]
    state.insert(session)
    _refresh_amounts(state, session)
    state.schedule(expires_at, EXPIRE_TIMER, session_id, clock_id=clock)
    return session


def _amounts_for_items(state: SandboxState, session: StripeObject) -> list[int]:
    """Each line item's share of the session's discount (proportional, remainder on the last)."""
    _, discount, _ = _amounts(state, session)
    amounts = [
        int(state.require("price", pid).get("unit_amount") or 0) * int(qty)
        for pid, qty in session["_items"]
    ]
    base = sum(amounts)
    shares = []
    left = discount
    for index, amount in enumerate(amounts):
        share = left if index == len(amounts) - 1 else (discount * amount // base if base else 0)
        left -= share
        shares.append(share)
    return shares


def _line_item_list(state: SandboxState, session: StripeObject) -> StripeObject:
    shares = _amounts_for_items(state, session) if session["_items"] else []
    data = []
    for stored, share in zip(session.get("_item_ids") or [], shares, strict=False):
        item = dict(stored)
        item.update(amount_discount=share, amount_total=item["amount_subtotal"] - share)
        data.append(item)
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


@router.expander(SESSION, "line_items")
def _expand_line_items(state: SandboxState, session: StripeObject) -> StripeObject:
    return _line_item_list(state, session)


@router.get("/v1/checkout/sessions/{id}")
def retrieve_session(call: Call) -> StripeObject:
    return call.require(SESSION, call.path["id"])


@router.post(
    "/v1/checkout/sessions/{id}",
    {
        "metadata": metadata(),
        "collected_information": anything(),
        "shipping_options": anything(),
        "line_items": anything(),
        "payment_intent_data": anything(),
    },
)
def update_session(call: Call) -> StripeObject:
    session = call.require(SESSION, call.path["id"])
    if "metadata" in call.params:
        call.state.update(
            session, {"metadata": apply_metadata(session["metadata"], call.params["metadata"])}
        )
    return session


@router.get("/v1/checkout/sessions", LIST, list=True)
def list_sessions(call: Call) -> StripeObject:
    p = call.params
    email = (p.get("customer_details") or {}).get("email")
    found = [
        s
        for s in call.state.all(SESSION, newest_first=True)
        if all(
            p[k] is None or s.get(k) == p[k]
            for k in ("customer", "status", "subscription", "payment_intent", "payment_link")
            if k in p
        )
        and in_range(s["created"], p.get("created"))
        and (email is None or (s.get("customer_details") or {}).get("email") == email)
    ]
    return call.list_response(found)


@router.get("/v1/checkout/sessions/{id}/line_items", list=True)
def list_line_items(call: Call) -> StripeObject:
    session = call.require(SESSION, call.path["id"])
    return call.list_response(list(_line_item_list(call.state, session)["data"]))


# --- ending: expire ------------------------------------------------------------------------------


def expire_session(state: SandboxState, session: StripeObject) -> StripeObject:
    """open -> expired (`checkout.session.expired`)."""
    previous = state.update(session, {"status": "expired", "url": None})
    state.cancel_timers(session["id"], EXPIRE_TIMER)
    state.emit("checkout.session.expired", session, previous)
    return session


@router.post("/v1/checkout/sessions/{id}/expire")
def expire(call: Call) -> StripeObject:
    session = call.require(SESSION, call.path["id"])
    if session["status"] != "open":
        raise invalid_request(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".',
            param="session",
        )
    return expire_session(call.state, session)


@router.timer(EXPIRE_TIMER)
def _expire_when_due(state: SandboxState, timer: Timer) -> None:
    session = state.get(SESSION, timer.object_id)
    if session is not None and session["status"] == "open":
        expire_session(state, session)


# --- completing -----------------------------------------------------------------------------------


def apply_promotion_code(state: SandboxState, session: StripeObject, code: str) -> None:
    """A code typed by the customer (only when `allow_promotion_codes`)."""
    if not session.get("allow_promotion_codes"):
        raise invalid_request(
            "This Checkout Session does not accept promotion codes.", param="promotion_code"
        )
    subtotal, _, _ = _amounts(state, session)
    coupon, promo = discounting.promotion_code_by_code(
        state, code, session.get("customer"), amount=subtotal, currency=session["currency"]
    )
    session["_discounts"] = [{"coupon": coupon["id"], "promotion_code": promo["id"]}]
    _refresh_amounts(state, session)


def complete_session(
    call: Call,
    session: StripeObject,
    *,
    payment_method: str | None,
    email: str | None = None,
    name: str | None = None,
) -> StripeObject:
    """Pay (or set up) a session with a test payment method, as the hosted page does.

    `payment_method` may be None only when nothing is due and the session collects a method
    `if_required` (a free trial).

    Raises a 402 card error when the payment is declined (the session stays open), and answers
    a session whose `_pending_action` names the PaymentIntent when 3-D Secure is needed.
    """
    state = call.state
    if session["status"] != "open":
        raise invalid_request(
            f"This Checkout Session is no longer open (status: {session['status']}).",
        )
    email = (
        email
        or (session.get("customer_details") or {}).get("email")
        or session.get("customer_email")
    )
    if not email and session.get("customer") is None:
        raise invalid_request(
            "An email address is required to complete this Checkout Session.", param="email"
        )
    allowed = session["payment_method_types"]
    method: StripeObject | None = None
    if payment_method is None and not method_optional(session):
        payment_method = "pm_card_visa"
    if payment_method is not None:
        method = payments_port.payment_method_for_token(
            state, payment_method, param="payment_method"
        )
        if method["type"] not in allowed:
            raise invalid_request(
                f"This Checkout Session accepts {', '.join(allowed)}, not {method['type']}.",
                param="payment_method",
            )
    customer = _customer_for(call, session, email=email, name=name)
    if customer is not None and method is not None:
        payments_port.attach(state, method, customer)
    if method is None:
        assert customer is not None
        _complete_subscription(state, session, customer, None)
    elif session["mode"] == "subscription":
        assert customer is not None
        _complete_subscription(state, session, customer, method)
    elif session["mode"] == "payment":
        _complete_payment(state, session, customer, method)
    else:
        _complete_setup(state, session, customer, method)
    details = dict(session.get("customer_details") or {})
    details.update(
        {
            "address": details.get("address"),
            "business_name": None,
            "email": email or (customer or {}).get("email"),
            "individual_name": None,
            "name": name or details.get("name") or (customer or {}).get("name"),
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
    )
    state.update(session, {"customer_details": details})
    if session["status"] == "complete":
        state.cancel_timers(session["id"], EXPIRE_TIMER)
        state.emit("checkout.session.completed", session)
    return session


def _customer_for(
    call: Call, session: StripeObject, *, email: str | None, name: str | None
) -> StripeObject | None:
    state = call.state
    if session.get("customer"):
        return state.require("customer", session["customer"], deleted_ok=True)
    if session.get("_customer"):
        # A previous attempt (declined card) already created the customer.
        return state.require("customer", session["_customer"], deleted_ok=True)
    needed = (
        session["mode"] == "subscription"
        or session.get("customer_creation") == "always"
        or bool((session.get("invoice_creation") or {}).get("enabled"))
    )
    if not needed:
        return None
    params: dict[str, Any] = {"email": email}
    if name:
        params["name"] = name
    customer_call = Call(
        state=state, params=params, path={}, request=call.request, request_id=call.request_id
    )
    customer = cast(StripeObject, create_customer(customer_call))
    session["_customer"] = customer["id"]
    state.touch()
    return customer


def method_optional(session: StripeObject) -> bool:
    """A subscription session with nothing due today that collects a method `if_required`."""
    return (
        session["mode"] == "subscription"
        and session.get("payment_method_collection") == "if_required"
        and not session.get("amount_total")
    )


def _complete_subscription(
    state: SandboxState,
    session: StripeObject,
    customer: StripeObject,
    method: StripeObject | None,
) -> None:
    data = session["_subscription_data"]
    now = state.now_for(customer)
    trial_end = None
    if data.get("trial_end"):
        trial_end = int(data["trial_end"])
    elif data.get("trial_period_days"):
        trial_end = now + int(data["trial_period_days"]) * 86_400
    recurring: list[tuple[StripeObject, int, dict[str, str]]] = [
        (state.require("price", pid), int(qty), {})
        for pid, qty in session["_items"]
        if state.require("price", pid).get("recurring")
    ]
    one_time = [
        (state.require("price", pid), int(qty))
        for pid, qty in session["_items"]
        if not state.require("price", pid).get("recurring")
    ]
    found = [
        (
            state.require("coupon", d["coupon"]),
            state.get("promotion_code", d["promotion_code"]) if d.get("promotion_code") else None,
        )
        for d in session.get("_discounts") or []
    ]
    sub = lifecycle.start_subscription(
        state,
        customer=customer,
        items=recurring,
        extra_items=one_time,
        default_payment_method=method["id"] if method is not None else None,
        trial_end=trial_end,
        payment_behavior="error_if_incomplete",
        metadata=data.get("metadata") or {},
        description=data.get("description"),
        trial_settings=data.get("trial_settings"),
        billing_cycle_anchor=data.get("billing_cycle_anchor"),
        proration_behavior=data.get("proration_behavior") or "create_prorations",
        discounts=found,
        announce_first=False,
        checkout_session=session["id"],
    )
    invoice = state.require("invoice", str(sub["latest_invoice"]))
    if sub["status"] == "incomplete":
        # The first payment waits for 3-D Secure: finish after the challenge.
        session["_pending_action"] = invoicing.open_payment_intent(state, invoice)
        session["_pending_subscription"] = sub["id"]
        state.touch()
        return
    _mark_subscription_session_complete(state, session, customer, sub, invoice)


def _mark_subscription_session_complete(
    state: SandboxState,
    session: StripeObject,
    customer: StripeObject,
    sub: StripeObject,
    invoice: StripeObject,
) -> None:
    if invoice["status"] == "open":
        payment_status = "unpaid"  # a bank debit still settling
    elif invoice["amount_paid"] > 0:
        payment_status = "paid"
    else:
        payment_status = "no_payment_required"
    state.update(
        session,
        {
            "status": "complete",
            "customer": customer["id"],
            "subscription": sub["id"],
            "invoice": invoice["id"],
            "payment_status": payment_status,
            "url": None,
        },
    )


def _complete_payment(
    state: SandboxState, session: StripeObject, customer: StripeObject | None, method: StripeObject
) -> None:
    data = session["_payment_intent_data"]
    outcome = payments_port.charge(
        state,
        customer=customer["id"] if customer else None,
        amount=int(session["amount_total"]),
        currency=str(session["currency"]),
        payment_method=method["id"],
        off_session=False,
        description=data.get("description") or "",
        metadata=data.get("metadata") or {},
        payment_intent=session.get("payment_intent"),
        setup_future_usage=data.get("setup_future_usage"),
        capture_method=data.get("capture_method"),
    )
    changes: dict[str, Any] = {"payment_intent": outcome.payment_intent}
    if customer is not None:
        changes["customer"] = customer["id"]
    if outcome.status == "requires_action":
        state.update(session, changes)
        session["_pending_action"] = outcome.payment_intent
        state.touch()
        return
    if outcome.status == "failed":
        state.update(session, changes)
        _raise_declined(outcome.error)
    # Paid, or a bank debit that settles later (payment_status stays unpaid until then).
    changes.update(
        status="complete",
        payment_status="paid" if outcome.status == "succeeded" else "unpaid",
        url=None,
    )
    discounts = _redeem_session_discounts(state, session, customer)
    if outcome.status == "succeeded" and outcome.payment_intent is not None:
        changes["invoice"] = _payment_receipt_invoice(
            state, session, customer, discounts, outcome.payment_intent
        )
    state.update(session, changes)


def _complete_setup(
    state: SandboxState, session: StripeObject, customer: StripeObject | None, method: StripeObject
) -> None:
    data = session["_setup_intent_data"]
    intent = payments_port.set_up(
        state,
        customer=customer["id"] if customer else None,
        payment_method=method["id"],
        metadata=data.get("metadata") or {},
    )
    changes: dict[str, Any] = {"setup_intent": intent["id"]}
    if customer is not None:
        changes["customer"] = customer["id"]
    state.update(session, changes)
    if intent["status"] == "requires_action":
        session["_pending_action"] = intent["id"]
        state.touch()
        return
    if intent["status"] not in ("succeeded", "processing"):
        error = dict(intent.get("last_setup_error") or {})
        error["setup_intent"] = state.render(intent)
        _raise_declined(error)
    state.update(session, {"status": "complete", "url": None})


def _redeem_session_discounts(
    state: SandboxState, session: StripeObject, customer: StripeObject | None
) -> list[str]:
    """Turn the session's coupon or promotion code into Discount objects (one redemption)."""
    ids: list[str] = []
    for entry in session.get("_discounts") or []:
        coupon = state.get("coupon", entry["coupon"])
        promo = (
            state.get("promotion_code", entry["promotion_code"])
            if entry.get("promotion_code")
            else None
        )
        if coupon is not None:
            discount = discounting.create_discount(
                state,
                coupon,
                promo,
                customer=customer["id"] if customer else None,
                checkout_session=session["id"],
            )
            ids.append(str(discount["id"]))
    return ids


def _payment_receipt_invoice(
    state: SandboxState,
    session: StripeObject,
    customer: StripeObject | None,
    discounts: list[str],
    intent_id: str,
) -> str | None:
    """`invoice_creation[enabled]`: a paid invoice for the payment, its lines the session's
    items (Stripe finalizes it and records the PaymentIntent as its payment)."""
    settings = session.get("invoice_creation") or {}
    if not settings.get("enabled") or customer is None:
        return None
    data = settings.get("invoice_data") or {}
    now = state.now_for(customer)
    lines = [
        invoicing.price_line(state, state.require("price", pid), int(qty), period=(now, now))
        for pid, qty in session["_items"]
    ]
    invoice = invoicing.create_invoice(
        state,
        customer=customer,
        currency=str(session["currency"]),
        lines=lines,
        billing_reason="manual",
        include_pending=False,
        discounts=discounts,
        auto_advance=False,
        metadata=dict(data.get("metadata") or {}),
        description=data.get("description"),
    )
    invoice["footer"] = data.get("footer")
    invoicing.finalize(state, invoice)
    if invoice["status"] == "open":
        invoicing.mark_paid(state, invoice, payment_intent=intent_id)
    return str(invoice["id"])


def _raise_declined(error: dict[str, Any] | None) -> None:
    from billfold_sandbox.errors import card_error

    error = error or {}
    raise card_error(
        error.get("message", "Your card was declined."),
        code=error.get("code", "card_declined"),
        decline_code=error.get("decline_code"),
        extra={
            k: v for k, v in error.items() if k in ("payment_intent", "charge", "payment_method")
        },
    )


@payments_port.on_payment_outcome
def _session_payment_outcome(state: SandboxState, intent: StripeObject) -> None:
    """A session's payment finished later: 3-D Secure done (or failed), a bank debit settled."""
    for session in state.all(SESSION):
        if session.get("_pending_action") == intent["id"]:
            if intent["status"] in ("succeeded", "requires_capture", "processing"):
                session.pop("_pending_action")
                finish_after_authentication(state, session, str(intent["id"]))
            elif intent["status"] in ("requires_payment_method", "canceled"):
                # The customer may try again on the page; an incomplete subscription expires.
                session.pop("_pending_action")
                session.pop("_pending_subscription", None)
                session["_error"] = (
                    intent.get("last_payment_error") or intent.get("last_setup_error") or {}
                ).get("message", "We are unable to authenticate your payment method.")
                state.touch()
            return
        if (
            session["status"] == "complete"
            and session["payment_status"] == "unpaid"
            and intent["id"] == session.get("payment_intent")
        ) or (
            session["status"] == "complete"
            and session["payment_status"] == "unpaid"
            and session.get("invoice")
            and _invoice_intent(state, session) == intent["id"]
        ):
            if intent["status"] in ("succeeded", "requires_capture"):
                previous = state.update(session, {"payment_status": "paid"})
                state.emit("checkout.session.async_payment_succeeded", session, previous)
            elif intent["status"] in ("requires_payment_method", "canceled"):
                state.emit("checkout.session.async_payment_failed", session)
            return


def _invoice_intent(state: SandboxState, session: StripeObject) -> str | None:
    invoice = state.get("invoice", str(session.get("invoice")))
    if invoice is None:
        return None
    for inpay_id in invoice.get("_payments", []):
        inpay = state.get("invoice_payment", inpay_id)
        if inpay is not None:
            return str(inpay["payment"].get("payment_intent"))
    return None


@router.post("/v1/test_helpers/checkout/sessions/{id}/complete", COMPLETE)
def complete(call: Call) -> StripeObject:
    """The sandbox's helper (not Stripe's): pay an open session without the hosted page.

    `payment_method` is a test method (`pm_card_visa` by default, `pm_card_chargeDeclined`,
    `pm_usBankAccount`, ...) or a card number; `email`, `name` and `promotion_code` are what a
    person would type. A decline answers 402 like Stripe's card errors, and the session stays
    open; a card that needs 3-D Secure answers 402 `authentication_required`.
    """
    session = call.require(SESSION, call.path["id"])
    p = call.params
    if p.get("promotion_code"):
        apply_promotion_code(call.state, session, p["promotion_code"])
    complete_session(
        call,
        session,
        payment_method=p.get("payment_method"),
        email=p.get("email"),
        name=p.get("name"),
    )
    if session.get("_pending_action"):
        raise StripeError(
            "This payment requires 3-D Secure authentication; complete it on the hosted page "
            "(the session's url).",
            status=402,
            type="card_error",
            code="authentication_required",
            extra={
                "payment_intent": call.state.render(call.state.find(session["_pending_action"]))
            },
        )
    return session


# --- the hosted page ------------------------------------------------------------------------------


def _page_context(state: SandboxState, session: StripeObject, base: str) -> dict[str, Any]:
    items = []
    for item in _line_item_list(state, session)["data"]:
        price = item["price"]
        recurring = price.get("recurring")
        items.append(
            {
                "description": item["description"],
                "quantity": item["quantity"],
                "amount": invoicing.money(int(item["amount_subtotal"]), item["currency"]),
                "interval": recurring["interval"] if recurring else None,
            }
        )
    subtotal = session.get("amount_subtotal") or 0
    discount = (session.get("total_details") or {}).get("amount_discount") or 0
    total = session.get("amount_total") or 0
    trial_days = session["_subscription_data"].get("trial_period_days")
    promo_code = None
    for entry in session.get("_discounts") or []:
        promo = state.get("promotion_code", entry.get("promotion_code") or "")
        promo_code = promo["code"] if promo else entry["coupon"]
    return {
        "session": session,
        "items": items,
        "subtotal": invoicing.money(int(subtotal), session["currency"]),
        "discount": invoicing.money(int(discount), session["currency"]) if discount else None,
        "total": invoicing.money(int(total), session["currency"]),
        "trial_days": trial_days,
        "promo_code": promo_code,
        "methods": []
        if method_optional(session)
        else payments_port.hosted_page_methods(session["payment_method_types"]),
        "action": f"{base}/checkout/pay/{session['id']}",
        "email": (session.get("customer_details") or {}).get("email")
        or session.get("customer_email")
        or "",
        "email_locked": bool(session.get("customer") or session.get("customer_email")),
    }


def _success_redirect(session: StripeObject, base: str) -> Response:
    target = session.get("success_url") or session.get("return_url")
    if not target:
        return RedirectResponse(f"{base}/checkout/pay/{session['id']}", status_code=303)
    return RedirectResponse(target.replace("{CHECKOUT_SESSION_ID}", session["id"]), status_code=303)


@router.page("GET", "/checkout/pay/{id}")
def checkout_page(call: Call) -> Response:
    state = call.state
    base = sandbox_base_url(call.request)
    session = state.get(SESSION, call.path["id"])
    if session is None:
        return render_page("checkout_gone.html", {"reason": "not_found"}, status=404)
    if session["status"] == "expired":
        return render_page(
            "checkout_gone.html", {"reason": "expired", "session": session}, status=410
        )
    if session["status"] == "complete":
        return render_page("checkout_done.html", {"session": session, "base": base})
    return render_page(
        "checkout.html", {**_page_context(state, session, base), "error": call.raw.get("error")}
    )


@router.page("POST", "/checkout/pay/{id}")
def checkout_submit(call: Call) -> Response:
    state = call.state
    base = sandbox_base_url(call.request)
    session = state.get(SESSION, call.path["id"])
    if session is None or session["status"] != "open":
        return RedirectResponse(f"{base}/checkout/pay/{call.path['id']}", status_code=303)
    form = call.raw
    error: str | None = None
    try:
        if form.get("action") == "apply_code":
            apply_promotion_code(state, session, str(form.get("promotion_code", "")))
            return render_page(
                "checkout.html",
                {**_page_context(state, session, base), "notice": "Promotion code applied."},
            )
        if form.get("promotion_code") and not session.get("_discounts"):
            apply_promotion_code(state, session, str(form["promotion_code"]))
        payment_method = str(form.get("payment_method") or "") or None
        name = str(form.get("name") or form.get("billingName") or "") or None
        if str(form.get("cardNumber") or "").strip():
            # Card details typed as on Stripe's page win over the quick-pick list.
            typed = payments_port.payment_method_from_typed_card(
                state,
                number=str(form["cardNumber"]),
                expiry=str(form.get("cardExpiry") or ""),
                cvc=str(form.get("cardCvc") or ""),
                name=str(form.get("billingName") or "") or None,
            )
            payment_method = typed["id"]
        complete_session(
            call,
            session,
            payment_method=payment_method,
            email=str(form.get("email") or "") or None,
            name=name,
        )
    except StripeError as exc:
        error = exc.message
    if error is not None:
        return render_page(
            "checkout.html",
            {**_page_context(state, session, base), "error": error},
            status=402 if "card" in error.lower() or "declined" in error.lower() else 400,
        )
    if session.get("_pending_action"):
        return RedirectResponse(
            f"{base}/checkout/pay/{session['id']}/authenticate", status_code=303
        )
    return _success_redirect(session, base)


@router.page("GET", "/checkout/pay/{id}/authenticate")
def authenticate_page(call: Call) -> Response:
    base = sandbox_base_url(call.request)
    session = call.state.get(SESSION, call.path["id"])
    if session is None or not session.get("_pending_action"):
        return RedirectResponse(f"{base}/checkout/pay/{call.path['id']}", status_code=303)
    return render_page(
        "authenticate.html",
        {
            "session": session,
            "action": f"{base}/checkout/pay/{session['id']}/authenticate",
            "total": invoicing.money(int(session.get("amount_total") or 0), session["currency"]),
        },
    )


@router.page("POST", "/checkout/pay/{id}/authenticate")
def authenticate_submit(call: Call) -> Response:
    """The 3-D Secure challenge: complete or fail it, then finish (or reopen) the session."""
    state = call.state
    base = sandbox_base_url(call.request)
    session = state.get(SESSION, call.path["id"])
    if session is None or not session.get("_pending_action"):
        return RedirectResponse(f"{base}/checkout/pay/{call.path['id']}", status_code=303)
    intent_id = str(session["_pending_action"])
    succeeded = call.raw.get("outcome") == "complete"
    try:
        payments_port.authenticate(state, intent_id, succeeded=succeeded)
    except StripeError as exc:
        return RedirectResponse(
            f"{base}/checkout/pay/{session['id']}?error={_quote(exc.message)}", status_code=303
        )
    if session["status"] == "complete":
        return _success_redirect(session, base)
    message = session.pop("_error", None) or "The payment could not be completed."
    state.touch()
    return RedirectResponse(
        f"{base}/checkout/pay/{session['id']}?error={_quote(message)}", status_code=303
    )


def finish_after_authentication(state: SandboxState, session: StripeObject, intent_id: str) -> None:
    """The PaymentIntent succeeded after 3-D Secure: complete the session."""
    customer = state.get("customer", session.get("customer") or session.get("_customer") or "")
    if session["mode"] == "subscription" and customer is not None:
        sub = state.require("subscription", str(session.pop("_pending_subscription")))
        invoice = state.require("invoice", str(sub["latest_invoice"]))
        if invoice["status"] == "open":
            invoicing.mark_paid(state, invoice, payment_intent=intent_id)
        _mark_subscription_session_complete(state, session, customer, sub, invoice)
    elif session["mode"] == "payment":
        discounts = _redeem_session_discounts(state, session, customer)
        changes: dict[str, Any] = {
            "status": "complete",
            "payment_status": "paid",
            "url": None,
            "invoice": _payment_receipt_invoice(state, session, customer, discounts, intent_id),
        }
        if customer is not None:
            changes["customer"] = customer["id"]
        state.update(session, changes)
    else:
        state.update(session, {"status": "complete", "url": None})
    state.cancel_timers(session["id"], EXPIRE_TIMER)
    state.emit("checkout.session.completed", session)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text)
