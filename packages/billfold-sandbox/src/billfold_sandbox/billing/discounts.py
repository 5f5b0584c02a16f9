"""Discounts: a coupon (or promotion code) applied to a subscription or an invoice.

A Discount object (`di_...`) records where the coupon applies and until when; invoices carry
the ids of the discounts that applied to them and the amounts in `total_discount_amounts`.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing.periods import add_intervals
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.resources.coupons import coupon_valid, redeem_coupon
from billfold_sandbox.resources.promotion_codes import find_active_code, promotion_code_usable
from billfold_sandbox.state import SandboxState, StripeObject


def resolve(
    state: SandboxState,
    requested: list[dict[str, Any]],
    *,
    customer: str | None,
    param: str = "discounts",
) -> list[tuple[StripeObject, StripeObject | None]]:
    """Check `discounts[n][coupon|promotion_code]`: (coupon, promotion code or None) pairs."""
    found: list[tuple[StripeObject, StripeObject | None]] = []
    for index, entry in enumerate(requested):
        where = f"{param}[{index}]"
        if entry.get("coupon") and entry.get("promotion_code"):
            raise invalid_request(
                "You may only specify one of these parameters: coupon, promotion_code.",
                param=f"{where}[coupon]",
            )
        if entry.get("promotion_code"):
            promo = state.require(
                "promotion_code", entry["promotion_code"], param=f"{where}[promotion_code]"
            )
            if not promotion_code_usable(state, promo, customer):
                raise invalid_request(
                    f"This promotion code cannot be redeemed: '{promo['code']}'.",
                    param=f"{where}[promotion_code]",
                )
            coupon = state.require("coupon", promo["promotion"]["coupon"])
            found.append((coupon, promo))
        elif entry.get("coupon"):
            coupon = state.require("coupon", entry["coupon"], param=f"{where}[coupon]")
            if not coupon_valid(state, coupon, state.now_for(customer) if customer else None):
                raise invalid_request(
                    f"Coupon expired: {coupon['id']}",
                    param=f"{where}[coupon]",
                    code="coupon_expired",
                )
            found.append((coupon, None))
        elif entry.get("discount"):
            raise invalid_request(
                "Reusing an existing discount is not supported by the sandbox.",
                param=f"{where}[discount]",
            )
    if len(found) > 20:
        raise invalid_request("You can apply at most 20 discounts.", param=param)
    return found


def promotion_code_by_code(
    state: SandboxState,
    code: str,
    customer: str | None,
    *,
    amount: int | None = None,
    currency: str | None = None,
) -> tuple[StripeObject, StripeObject]:
    """The (coupon, promotion code) a customer typed on a hosted page; Stripe's refusal
    (unknown, expired, restricted to first-time customers or a minimum amount) otherwise."""
    promo = find_active_code(state, code.strip())
    coupon = state.get("coupon", promo["promotion"]["coupon"]) if promo else None
    if promo is None or coupon is None or not promotion_code_usable(state, promo, customer):
        raise invalid_request("This code is invalid.", param="promotion_code")
    restrictions = promo.get("restrictions") or {}
    minimum = restrictions.get("minimum_amount")
    if minimum is not None and amount is not None:
        wanted = str(restrictions.get("minimum_amount_currency") or currency)
        if currency != wanted or amount < int(minimum):
            raise invalid_request(
                "This code is valid, but the order does not meet its minimum amount.",
                param="promotion_code",
            )
    if restrictions.get("first_time_transaction") and customer and _has_paid(state, customer):
        raise invalid_request("This code is only for first-time customers.", param="promotion_code")
    return coupon, promo


def _has_paid(state: SandboxState, customer: str) -> bool:
    return any(
        invoice["customer"] == customer and int(invoice["amount_paid"]) > 0
        for invoice in state.all("invoice")
    ) or any(
        charge.get("customer") == customer and charge.get("paid") for charge in state.all("charge")
    )


def create_discount(
    state: SandboxState,
    coupon: StripeObject,
    promo: StripeObject | None,
    *,
    customer: str | None,
    subscription: str | None = None,
    invoice: str | None = None,
    checkout_session: str | None = None,
) -> StripeObject:
    """Redeem the coupon (and promotion code) and store the Discount."""
    start = state.now_for(customer) if customer else state.now()
    end = None
    if coupon.get("duration") == "repeating":
        end = add_intervals(start, "month", int(coupon["duration_in_months"]), 1)
    discount: StripeObject = {
        "id": state.new_id("di"),
        "object": "discount",
        "checkout_session": checkout_session,
        "customer": customer,
        "customer_account": None,
        "end": end,
        "invoice": invoice,
        "invoice_item": None,
        "promotion_code": promo["id"] if promo else None,
        "source": {"coupon": coupon["id"], "type": "coupon"},
        "start": start,
        "subscription": subscription,
        "subscription_item": None,
        "_uses": 0,
    }
    state.insert(discount)
    redeem_coupon(state, coupon)
    if promo is not None:
        state.update(promo, {"times_redeemed": int(promo["times_redeemed"]) + 1})
    return discount


def active_discounts(state: SandboxState, discount_ids: list[str], at: int) -> list[StripeObject]:
    """The discounts among `discount_ids` that still apply at `at`."""
    active: list[StripeObject] = []
    for discount_id in discount_ids:
        discount = state.get("discount", discount_id)
        if discount is None:
            continue
        coupon = state.get("coupon", discount["source"]["coupon"])
        if coupon is None:
            continue
        if coupon.get("duration") == "once" and int(discount.get("_uses", 0)) >= 1:
            continue
        if discount.get("end") is not None and at >= int(discount["end"]):
            continue
        active.append(discount)
    return active


def discount_amounts(
    state: SandboxState, invoice: StripeObject, lines: list[StripeObject]
) -> list[dict[str, Any]]:
    """Amounts each of the invoice's discounts takes off its discountable positive subtotal.

    Percentages round to the nearest unit; a fixed amount never exceeds what is left.
    """
    base = sum(int(line["amount"]) for line in lines if line.get("discountable", True))
    totals: list[dict[str, Any]] = []
    left = max(base, 0)
    for discount_id in invoice.get("discounts") or []:
        discount = state.get("discount", discount_id)
        coupon = state.get("coupon", discount["source"]["coupon"]) if discount else None
        if coupon is None:
            continue
        if coupon.get("percent_off") is not None:
            amount = round(left * float(coupon["percent_off"]) / 100)
        elif coupon.get("currency") == invoice["currency"]:
            amount = min(int(coupon["amount_off"]), left)
        else:
            amount = 0
        left -= amount
        totals.append({"amount": amount, "discount": discount_id})
    # Spread each discount over the lines in proportion to their amounts (last line takes the rest).
    positives = [line for line in lines if line.get("discountable", True) and line["amount"] > 0]
    for line in lines:
        line["discount_amounts"] = []
        line["discounts"] = []
    for total in totals:
        remaining = total["amount"]
        for i, line in enumerate(positives):
            share = (
                remaining
                if i == len(positives) - 1
                else (total["amount"] * int(line["amount"]) // base if base > 0 else 0)
            )
            remaining -= share
            line["discount_amounts"].append({"amount": share, "discount": total["discount"]})
            line["discounts"].append(total["discount"])
    return totals


def record_use(state: SandboxState, discount_ids: list[str]) -> None:
    """Count an invoice that used the discounts (a `once` coupon is then spent)."""
    for discount_id in discount_ids:
        discount = state.get("discount", discount_id)
        if discount is not None:
            discount["_uses"] = int(discount.get("_uses", 0)) + 1
    state.touch()
