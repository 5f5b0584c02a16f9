"""The customer portal: `/v1/billing_portal/sessions`, `/v1/billing_portal/configurations` and
the hosted page a session's `url` opens.

The page lists the customer's subscriptions and payment methods and lets a person cancel (at
period end, or now when configured), renew a subscription set to cancel, switch plan (among the
configured prices, or the active recurring prices of the same product), add a test card, make
a card the default, remove one, see invoices, and go back to `return_url`. Every action goes
through the same rules as the API and sends the same events.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from billfold_sandbox.billing import invoicing, lifecycle, payments_port
from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.pages import (
    object_for_page,
    remember_base,
    render_page,
    sandbox_base_url,
)
from billfold_sandbox.params import (
    Field,
    anything,
    apply_metadata,
    array,
    boolean,
    enum,
    integer,
    metadata,
    obj,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

SESSION = "billing_portal.session"
CONFIGURATION = "billing_portal.configuration"

_FEATURES = obj(
    {
        "customer_update": obj(
            {"enabled": boolean(required=True), "allowed_updates": array(string())}
        ),
        "invoice_history": obj({"enabled": boolean(required=True)}),
        "payment_method_update": obj(
            {"enabled": boolean(required=True), "payment_method_configuration": anything()}
        ),
        "subscription_cancel": obj(
            {
                "enabled": boolean(required=True),
                "mode": enum("at_period_end", "immediately"),
                "proration_behavior": enum("always_invoice", "create_prorations", "none"),
                "cancellation_reason": anything(),
            }
        ),
        "subscription_update": obj(
            {
                "enabled": boolean(required=True),
                "default_allowed_updates": array(enum("price", "promotion_code", "quantity")),
                "products": array(
                    obj(
                        {
                            "product": string(required=True),
                            "prices": array(string()),
                            "adjustable_quantity": anything(),
                        }
                    )
                ),
                "proration_behavior": enum("always_invoice", "create_prorations", "none"),
                "schedule_at_period_end": anything(),
                "billing_cycle_anchor": anything(),
                "trial_update_behavior": anything(),
            }
        ),
        "subscription_pause": anything(),
    }
)
CONFIGURATION_PARAMS: dict[str, Field] = {
    "business_profile": obj(
        {
            "headline": string(nullable=True, max_length=60),
            "privacy_policy_url": string(),
            "terms_of_service_url": string(),
        }
    ),
    "default_return_url": string(nullable=True),
    "features": _FEATURES,
    "login_page": obj({"enabled": boolean(required=True)}),
    "metadata": metadata(),
    "name": string(nullable=True, max_length=256),
}
SESSION_CREATE: dict[str, Field] = {
    "customer": string(required=True),
    "return_url": string(),
    "configuration": string(),
    "locale": string(),
    "on_behalf_of": string(),
    "customer_account": string(),
    "after_expiration": anything(),
    "flow_data": obj(
        {
            "type": enum(
                "payment_method_update",
                "subscription_cancel",
                "subscription_update",
                "subscription_update_confirm",
                required=True,
            ),
            "after_completion": obj(
                {
                    "type": enum(
                        "hosted_confirmation", "portal_homepage", "redirect", required=True
                    ),
                    "redirect": obj({"return_url": string(required=True)}),
                    "hosted_confirmation": obj({"custom_message": string(max_length=500)}),
                }
            ),
            "subscription_cancel": obj(
                {"subscription": string(required=True), "retention": anything()}
            ),
            "subscription_update": obj({"subscription": string(required=True)}),
            "subscription_pause": anything(),
            "subscription_update_confirm": obj(
                {
                    "subscription": string(required=True),
                    "items": array(
                        obj(
                            {
                                "id": string(required=True),
                                "price": string(),
                                "quantity": integer(min=0),
                            }
                        ),
                        required=True,
                    ),
                    "discounts": anything(),
                }
            ),
        }
    ),
}


# --- configurations -------------------------------------------------------------------------------


def _features(
    given: dict[str, Any] | None, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    features: dict[str, Any] = current or {
        "customer_update": {"allowed_updates": [], "enabled": False},
        "invoice_history": {"enabled": False},
        "payment_method_update": {"enabled": False, "payment_method_configuration": None},
        "subscription_cancel": {
            "cancellation_reason": {"enabled": False, "options": []},
            "enabled": False,
            "mode": "at_period_end",
            "proration_behavior": "none",
        },
        "subscription_update": {
            "billing_cycle_anchor": None,
            "default_allowed_updates": [],
            "enabled": False,
            "products": [],
            "proration_behavior": "none",
            "schedule_at_period_end": {"conditions": []},
            "trial_update_behavior": "end_trial",
        },
    }
    for name, values in (given or {}).items():
        if name not in features:
            continue  # subscription_pause: accepted, the portal offers no pausing
        merged = dict(features[name])
        merged.update({k: v for k, v in values.items() if k not in ("cancellation_reason",)})
        if name == "subscription_update" and "products" in values:
            merged["products"] = [
                {"product": p["product"], "prices": list(p.get("prices") or [])}
                for p in values["products"]
            ]
        features[name] = merged
    return features


def _new_configuration(
    state: SandboxState, p: dict[str, Any], *, is_default: bool = False
) -> StripeObject:
    now = state.now()
    profile = p.get("business_profile") or {}
    config: StripeObject = {
        "id": state.new_id("bpc"),
        "object": CONFIGURATION,
        "active": True,
        "application": None,
        "business_profile": {
            "headline": profile.get("headline"),
            "privacy_policy_url": profile.get("privacy_policy_url"),
            "terms_of_service_url": profile.get("terms_of_service_url"),
        },
        "created": now,
        "default_return_url": p.get("default_return_url"),
        "features": _features(p.get("features")),
        "is_default": is_default,
        "livemode": False,
        "login_page": {"enabled": False, "url": None},
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "name": p.get("name"),
        "updated": now,
    }
    state.insert(config)
    return config


def default_configuration(state: SandboxState) -> StripeObject:
    """The account's default portal configuration (made on first use, every feature on)."""
    for config in state.all(CONFIGURATION):
        if config.get("is_default"):
            return config
    features = {
        "customer_update": {"enabled": True, "allowed_updates": ["email", "name"]},
        "invoice_history": {"enabled": True},
        "payment_method_update": {"enabled": True},
        "subscription_cancel": {
            "enabled": True,
            "mode": "at_period_end",
            "proration_behavior": "none",
        },
        "subscription_update": {
            "enabled": True,
            "default_allowed_updates": ["price"],
            "proration_behavior": "create_prorations",
        },
    }
    return _new_configuration(state, {"features": features}, is_default=True)


@router.post("/v1/billing_portal/configurations", {**CONFIGURATION_PARAMS, "features": _FEATURES})
def create_configuration(call: Call) -> StripeObject:
    if "features" not in call.params:
        raise invalid_request(
            "Missing required param: features.", param="features", code="parameter_missing"
        )
    config = _new_configuration(call.state, call.params)
    call.emit("billing_portal.configuration.created", config)
    return config


@router.get("/v1/billing_portal/configurations/{id}")
def retrieve_configuration(call: Call) -> StripeObject:
    return call.require(CONFIGURATION, call.path["id"])


@router.post(
    "/v1/billing_portal/configurations/{id}", {**CONFIGURATION_PARAMS, "active": boolean()}
)
def update_configuration(call: Call) -> StripeObject:
    config = call.require(CONFIGURATION, call.path["id"])
    p = dict(call.params)
    p.pop("expand", None)
    if "features" in p:
        p["features"] = _features(p["features"], dict(config["features"]))
    if "metadata" in p:
        p["metadata"] = apply_metadata(config["metadata"], p["metadata"])
    if "business_profile" in p:
        p["business_profile"] = {**config["business_profile"], **p["business_profile"]}
    if "login_page" in p:
        p["login_page"] = {"enabled": p["login_page"]["enabled"], "url": None}
    p["updated"] = call.state.now()
    previous = call.state.update(config, p)
    call.emit("billing_portal.configuration.updated", config, previous)
    return config


@router.get(
    "/v1/billing_portal/configurations",
    {"active": boolean(), "is_default": boolean()},
    list=True,
)
def list_configurations(call: Call) -> StripeObject:
    p = call.params
    found = [
        c
        for c in call.state.all(CONFIGURATION, newest_first=True)
        if ("active" not in p or c["active"] == p["active"])
        and ("is_default" not in p or c["is_default"] == p["is_default"])
    ]
    return call.list_response(found)


# --- sessions -------------------------------------------------------------------------------------


def _flow(state: SandboxState, customer: StripeObject, given: dict[str, Any] | None) -> Any:
    if given is None:
        return None
    kind = given["type"]
    after = given.get("after_completion") or {"type": "portal_homepage"}
    if after["type"] == "redirect" and not (after.get("redirect") or {}).get("return_url"):
        raise invalid_request(
            "Missing required param: flow_data[after_completion][redirect][return_url].",
            param="flow_data[after_completion][redirect][return_url]",
            code="parameter_missing",
        )
    if after["type"] == "redirect" and not str(after["redirect"]["return_url"]).startswith(
        ("http://", "https://")
    ):
        raise invalid_request(
            "Not a valid URL",
            param="flow_data[after_completion][redirect][return_url]",
            code="url_invalid",
        )
    flow: dict[str, Any] = {
        "after_completion": {
            "hosted_confirmation": {
                "custom_message": (after.get("hosted_confirmation") or {}).get("custom_message")
            }
            if after["type"] == "hosted_confirmation"
            else None,
            "redirect": {"return_url": after["redirect"]["return_url"]}
            if after["type"] == "redirect"
            else None,
            "type": after["type"],
        },
        "subscription_cancel": None,
        "subscription_update": None,
        "subscription_update_confirm": None,
        "type": kind,
    }
    if kind != "payment_method_update":
        details = given.get(kind)
        if not details:
            raise invalid_request(
                f"Missing required param: flow_data[{kind}].",
                param=f"flow_data[{kind}]",
                code="parameter_missing",
            )
        sub = state.require(
            "subscription", details["subscription"], param=f"flow_data[{kind}][subscription]"
        )
        if sub["customer"] != customer["id"] or sub["status"] in lifecycle.ENDED:
            raise invalid_request(
                f"The subscription {sub['id']} cannot be managed in this portal session.",
                param=f"flow_data[{kind}][subscription]",
            )
        if kind == "subscription_cancel":
            flow[kind] = {"retention": None, "subscription": sub["id"]}
        elif kind == "subscription_update":
            flow[kind] = {"subscription": sub["id"]}
        else:
            item_ids = {i["id"] for i in lifecycle.items_of(sub)}
            for index, entry in enumerate(details["items"]):
                where = f"flow_data[{kind}][items][{index}]"
                if entry["id"] not in item_ids:
                    raise invalid_request(
                        f"No such subscription item: '{entry['id']}'", param=f"{where}[id]"
                    )
                if entry.get("price"):
                    state.require("price", entry["price"], param=f"{where}[price]")
            flow[kind] = {
                "discounts": [],
                "items": [
                    {"id": i["id"], "price": i.get("price"), "quantity": i.get("quantity")}
                    for i in details["items"]
                ],
                "subscription": sub["id"],
            }
    return flow


@router.post("/v1/billing_portal/sessions", SESSION_CREATE)
def create_portal_session(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    remember_base(state, call.request)
    customer = call.require("customer", p["customer"], param="customer")
    if p.get("configuration"):
        config = call.require(CONFIGURATION, p["configuration"], param="configuration")
        if not config["active"]:
            raise invalid_request(
                "The configuration is inactive; activate it first.", param="configuration"
            )
    else:
        config = default_configuration(state)
    return_url = p.get("return_url") or config.get("default_return_url")
    if return_url is None:
        raise invalid_request(
            "Missing required param: return_url (the configuration has no default_return_url).",
            param="return_url",
            code="parameter_missing",
        )
    if not str(return_url).startswith(("http://", "https://")):
        raise invalid_request("Not a valid URL", param="return_url", code="url_invalid")
    session_id = state.new_id("bps")
    session: StripeObject = {
        "id": session_id,
        "object": SESSION,
        "configuration": config["id"],
        "created": state.now_for(customer),
        "customer": customer["id"],
        "customer_account": None,
        "flow": _flow(state, customer, p.get("flow_data")),
        "livemode": False,
        "locale": p.get("locale"),
        "on_behalf_of": p.get("on_behalf_of"),
        "return_url": return_url,
        "url": f"{sandbox_base_url(call.request)}/p/session/{session_id}_" + secrets.token_hex(12),
    }
    session["_page"] = session["url"].rsplit("/", 1)[1]
    state.insert(session)
    return session


# --- the hosted page ------------------------------------------------------------------------------


def _allowed_prices(
    state: SandboxState, config: StripeObject, sub: StripeObject
) -> list[StripeObject]:
    """Prices a subscription may switch to: the configured ones, else the active recurring
    prices of its product in its currency."""
    update = config["features"]["subscription_update"]
    if not update.get("enabled"):
        return []
    configured = update.get("products") or []
    if configured:
        ids = [pid for entry in configured for pid in entry.get("prices") or []]
        products = {entry["product"] for entry in configured if not entry.get("prices")}
        found = [state.get("price", pid) for pid in ids]
        prices = [pr for pr in found if pr is not None]
        prices += [
            pr for pr in state.all("price") if pr["product"] in products and pr.get("active")
        ]
    else:
        product = lifecycle.items_of(sub)[0]["price"]["product"]
        prices = [pr for pr in state.all("price") if pr["product"] == product and pr.get("active")]
    return [
        pr
        for pr in prices
        if pr.get("recurring") and pr["currency"] == sub["currency"] and pr.get("active", True)
    ]


def _describe_price(state: SandboxState, price: StripeObject) -> str:
    recurring = price["recurring"]
    every = recurring["interval"]
    if int(recurring.get("interval_count") or 1) > 1:
        every = f"{recurring['interval_count']} {every}s"
    name = invoicing.product_name(state, price)
    label = price.get("nickname") or name
    return f"{label} · {invoicing.format_amount(price)} / {every}"


def _page_context(state: SandboxState, session: StripeObject, base: str) -> dict[str, Any]:
    customer = state.require("customer", session["customer"], deleted_ok=True)
    config = state.require(CONFIGURATION, session["configuration"])
    features = config["features"]
    default_pm = (customer.get("invoice_settings") or {}).get("default_payment_method")
    subscriptions = []
    for sub in state.all("subscription", newest_first=True):
        if sub["customer"] != customer["id"] or sub["status"] in lifecycle.ENDED:
            continue
        item = lifecycle.items_of(sub)[0]
        _, end = lifecycle.current_period(sub)
        subscriptions.append(
            {
                "id": sub["id"],
                "status": sub["status"],
                "plan": _describe_price(state, item["price"]),
                "price": item["price"]["id"],
                "quantity": item["quantity"],
                "period_end": lifecycle.format_date(end),
                "cancel_at_period_end": sub["cancel_at_period_end"] or sub.get("cancel_at"),
                "cancel_at": lifecycle.format_date(sub["cancel_at"])
                if sub.get("cancel_at")
                else None,
                "trial_end": lifecycle.format_date(sub["trial_end"])
                if sub["status"] == "trialing" and sub.get("trial_end")
                else None,
                "choices": [
                    {"id": pr["id"], "label": _describe_price(state, pr)}
                    for pr in _allowed_prices(state, config, sub)
                    if pr["id"] != item["price"]["id"]
                ],
            }
        )
    methods = [
        {
            "id": pm["id"],
            "label": _describe_method(pm),
            "default": pm["id"] == default_pm,
        }
        for pm in state.all("payment_method", newest_first=True)
        if pm.get("customer") == customer["id"]
    ]
    invoices = [
        {
            "number": inv.get("number") or inv["id"],
            "date": lifecycle.format_date(int(inv["created"])),
            "amount": invoicing.money(int(inv["total"]), inv["currency"]),
            "status": inv["status"],
        }
        for inv in state.all("invoice", newest_first=True)
        if inv["customer"] == customer["id"] and inv["status"] != "draft"
    ][:12]
    return {
        "session": session,
        "customer": customer,
        "features": features,
        "business": config["business_profile"].get("headline") or "billfold sandbox",
        "subscriptions": subscriptions,
        "methods": methods,
        "invoices": invoices if features["invoice_history"]["enabled"] else None,
        "card_choices": [
            c for c in payments_port.hosted_page_methods(["card"]) if c["value"] in _PORTAL_CARDS
        ],
        "action": f"{base}/p/session/{session['_page']}",
        "flow": session.get("flow"),
    }


_PORTAL_CARDS = ("pm_card_visa", "pm_card_mastercard", "pm_card_chargeCustomerFail")


def _describe_method(pm: StripeObject) -> str:
    if pm["type"] == "card":
        card = pm["card"]
        brand = str(card["brand"]).title()
        return f"{brand} •••• {card['last4']} · expires {card['exp_month']:02d}/{card['exp_year']}"
    if pm["type"] == "us_bank_account":
        bank = pm["us_bank_account"]
        return f"{bank.get('bank_name') or 'Bank account'} •••• {bank['last4']}"
    return str(pm["type"])


@router.page("GET", "/p/session/{page}")
def portal_page(call: Call) -> Response:
    session = object_for_page(call.state, SESSION, call.path["page"])
    if session is None:
        return render_page("link_gone.html", {}, status=404)
    base = sandbox_base_url(call.request)
    context = _page_context(call.state, session, base)
    context["notice"] = call.raw.get("notice")
    context["error"] = call.raw.get("error")
    return render_page("portal.html", context)


@router.page("POST", "/p/session/{page}")
def portal_action(call: Call) -> Response:
    state = call.state
    session = object_for_page(state, SESSION, call.path["page"])
    base = sandbox_base_url(call.request)
    if session is None:
        return render_page("link_gone.html", {}, status=404)
    here = f"{base}/p/session/{session['_page']}"
    try:
        notice = _perform(call, session, {k: str(v) for k, v in call.raw.items()})
    except StripeError as exc:
        return RedirectResponse(f"{here}?error={quote(exc.message)}", status_code=303)
    flow = session.get("flow") or {}
    after = flow.get("after_completion") or {}
    if after.get("type") == "redirect" and notice is not None:
        return RedirectResponse(after["redirect"]["return_url"], status_code=303)
    custom = (after.get("hosted_confirmation") or {}).get("custom_message")
    if after.get("type") == "hosted_confirmation" and custom:
        notice = custom
    return RedirectResponse(f"{here}?notice={quote(notice or 'Done.')}", status_code=303)


def _owned_subscription(state: SandboxState, session: StripeObject, sub_id: str) -> StripeObject:
    sub = state.get("subscription", sub_id)
    if sub is None or sub["customer"] != session["customer"] or sub["status"] in lifecycle.ENDED:
        raise invalid_request("That subscription cannot be managed here.")
    return sub


def _perform(call: Call, session: StripeObject, form: dict[str, str]) -> str | None:
    """One portal action, through the same rules as the API."""
    state = call.state
    config = state.require(CONFIGURATION, session["configuration"])
    features = config["features"]
    action = form.get("action", "")
    customer = state.require("customer", session["customer"])
    if action == "cancel":
        if not features["subscription_cancel"]["enabled"]:
            raise invalid_request("Cancelling is not enabled in this portal.")
        sub = _owned_subscription(state, session, form.get("subscription", ""))
        if features["subscription_cancel"]["mode"] == "immediately":
            lifecycle.cancel_now(
                state,
                sub,
                prorate_unused=features["subscription_cancel"]["proration_behavior"] != "none",
            )
            return "Your subscription has been canceled."
        now = state.now_for(sub)
        _, end = lifecycle.current_period(sub)
        details = dict(sub["cancellation_details"], reason="cancellation_requested")
        previous = state.update(
            sub,
            {
                "cancel_at_period_end": True,
                "cancel_at": end,
                "canceled_at": now,
                "cancellation_details": details,
            },
        )
        if previous:
            state.emit("customer.subscription.updated", sub, previous)
        lifecycle.reschedule(state, sub)
        return f"Your subscription will end on {lifecycle.format_date(end)}."
    if action == "reactivate":
        sub = _owned_subscription(state, session, form.get("subscription", ""))
        details = dict(sub["cancellation_details"], reason=None)
        previous = state.update(
            sub,
            {
                "cancel_at_period_end": False,
                "cancel_at": None,
                "canceled_at": None,
                "cancellation_details": details,
            },
        )
        if previous:
            state.emit("customer.subscription.updated", sub, previous)
        lifecycle.reschedule(state, sub)
        return "Your subscription has been renewed."
    if action == "switch":
        sub = _owned_subscription(state, session, form.get("subscription", ""))
        allowed = {pr["id"]: pr for pr in _allowed_prices(state, config, sub)}
        price = allowed.get(form.get("price", ""))
        if price is None:
            raise invalid_request("That plan is not available.")
        item = lifecycle.items_of(sub)[0]
        others = [
            (i, i["price"], int(i["quantity"]), dict(i["metadata"]))
            for i in lifecycle.items_of(sub)[1:]
        ]
        _change_plan(
            state,
            sub,
            config,
            [(item, price, int(item["quantity"]), dict(item["metadata"])), *others],
        )
        return f"Your plan is now {_describe_price(state, price)}."
    if action == "confirm_update":
        flow = session.get("flow") or {}
        confirm = flow.get("subscription_update_confirm")
        if flow.get("type") != "subscription_update_confirm" or not confirm:
            raise invalid_request("There is no change to confirm in this portal session.")
        sub = _owned_subscription(state, session, confirm["subscription"])
        current = {i["id"]: i for i in lifecycle.items_of(sub)}
        wanted: list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]] = []
        for entry in confirm["items"]:
            found = current.get(entry["id"])
            if found is None:
                raise invalid_request("That subscription item no longer exists.")
            new_price = (
                state.require("price", entry["price"]) if entry.get("price") else found["price"]
            )
            quantity = (
                int(entry["quantity"])
                if entry.get("quantity") is not None
                else int(found["quantity"])
            )
            wanted.append((found, new_price, quantity, dict(found["metadata"])))
        untouched = [
            (i, i["price"], int(i["quantity"]), dict(i["metadata"]))
            for item_id, i in current.items()
            if item_id not in {entry["id"] for entry in confirm["items"]}
        ]
        _change_plan(state, sub, config, [*wanted, *untouched])
        return "Your plan was updated."
    if action == "update_customer":
        allowed = features["customer_update"]
        if not allowed.get("enabled"):
            raise invalid_request("Updating your details is not enabled in this portal.")
        updates: dict[str, Any] = {}
        for name in ("email", "name"):
            value = form.get(name, "").strip()
            if name in allowed.get("allowed_updates", []) and value:
                if name == "email" and "@" not in value:
                    raise invalid_request("Enter a valid email address.")
                updates[name] = value
        previous = state.update(customer, updates)
        if previous:
            state.emit("customer.updated", customer, previous)
        return "Your details were updated."
    if action in ("add_pm", "remove_pm", "default_pm"):
        if not features["payment_method_update"]["enabled"]:
            raise invalid_request("Updating payment methods is not enabled in this portal.")
        if action == "add_pm":
            token = form.get("card", "")
            if token not in _PORTAL_CARDS:
                raise invalid_request("Choose one of the test cards.")
            intent = payments_port.set_up(
                state, customer=customer["id"], payment_method=token, metadata={}
            )
            if intent["status"] != "succeeded":
                message = (intent.get("last_setup_error") or {}).get("message")
                raise invalid_request(message or "The card could not be saved.")
            _make_default(state, customer, str(intent["payment_method"]))
            return "Payment method added."
        pm_id = form.get("payment_method", "")
        pm = state.get("payment_method", pm_id)
        if pm is None or pm.get("customer") != customer["id"]:
            raise invalid_request("That payment method is not on file.")
        if action == "default_pm":
            _make_default(state, customer, pm_id)
            return "Default payment method updated."
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        live = [
            s
            for s in state.all("subscription")
            if s["customer"] == customer["id"] and s["status"] not in lifecycle.ENDED
        ]
        if pm_id == default and live:
            raise invalid_request(
                "The default payment method of a customer with subscriptions cannot be removed; "
                "make another one the default first."
            )
        payments_port.detach(state, pm_id)
        return "Payment method removed."
    raise invalid_request(f"Unknown action {action!r}.")


def _change_plan(
    state: SandboxState,
    sub: StripeObject,
    config: StripeObject,
    items: list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]],
) -> None:
    """A plan change from the portal, prorated as the configuration says."""
    changes, invoice = lifecycle.change_items(
        state,
        sub,
        items,
        proration_behavior=config["features"]["subscription_update"]["proration_behavior"],
        proration_date=None,
    )
    previous = state.update(sub, changes)
    if previous:
        state.emit("customer.subscription.updated", sub, previous)
    lifecycle.reschedule(state, sub)
    if invoice is not None:
        lifecycle.settle_change_invoice(state, sub, invoice)


def _make_default(state: SandboxState, customer: StripeObject, pm_id: str) -> None:
    """The portal sets a new card as the customer's and their subscriptions' default."""
    settings = dict(customer.get("invoice_settings") or {})
    if settings.get("default_payment_method") != pm_id:
        settings["default_payment_method"] = pm_id
        previous = state.update(customer, {"invoice_settings": settings})
        state.emit("customer.updated", customer, previous)
    for sub in state.all("subscription"):
        if (
            sub["customer"] == customer["id"]
            and sub["status"] not in lifecycle.ENDED
            and sub.get("default_payment_method") not in (None, pm_id)
        ):
            previous = state.update(sub, {"default_payment_method": pm_id})
            state.emit("customer.subscription.updated", sub, previous)
