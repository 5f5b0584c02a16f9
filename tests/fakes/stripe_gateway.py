"""A hand-written in-memory fake of billfold's `StripeGateway` (one fake per capability
protocol, not of the stripe module), for unit tests of the domains.

`FakeStripe` is the world: Stripe-shaped JSON objects (API version 2026-10-28: periods on the
subscription's items, the invoice's subscription under `parent.subscription_details`), the
events real Stripe would emit, and idempotency records. The fakes answer with billfold's types
built here by hand (never with billfold's own parsers), and
tests/stripe/test_gateway_contract.py checks that they behave like the real adapter against
the sandbox and that the raw objects have the keys of Stripe's sample objects.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from billfold.errors import IdempotencyConflict, NotFound, PaymentFailed, ValidationFailed
from billfold.stripe.gateway import (
    BankAccount,
    CheckoutMode,
    CheckoutSessionInfo,
    CustomerInfo,
    DisputeInfo,
    InvoiceInfo,
    LineItem,
    PaymentIntentInfo,
    PaymentMethodInfo,
    PriceInfo,
    ProductInfo,
    ProrationBehavior,
    RefundInfo,
    SetupIntentInfo,
    SetupMethod,
    StripeEvent,
    SubscriptionSnapshot,
)

T = TypeVar("T")
MONTH = 30 * 86400
YEAR = 365 * 86400
PERIOD = {"month": MONTH, "year": YEAR, "week": 7 * 86400, "day": 86400}
# Stripe's test payment methods the fake knows: id -> (brand, last4, decline code or None).
TEST_CARDS = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_chargeDeclined": ("visa", "0002", "generic_decline"),
    "pm_card_chargeCustomerFail": ("visa", "0341", "generic_decline"),
}
# Cards whose check on attaching is already declined.
DECLINED_ON_ATTACH = {"pm_card_chargeDeclined"}
TEST_BANK_ACCOUNTS = {"pm_usBankAccount_success": "6789"}
MICRODEPOSIT_AMOUNTS = (32, 45)
MICRODEPOSIT_DESCRIPTOR_CODE = "SM11AA"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload` (t=..., v1=HMAC-SHA256 of "t.payload")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def _request(endpoint: str, arguments: Mapping[str, Any]) -> str:
    """A call as Stripe compares it for idempotency: the endpoint and its parameters."""
    params = {k: v for k, v in arguments.items() if k not in ("self", "idempotency_key")}
    return json.dumps([endpoint, params], sort_keys=True, default=repr)


def _when(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def _missing(kind: str, object_id: str) -> NotFound:
    return NotFound(f"No such {kind}: '{object_id}'")


def _find(store: Mapping[str, dict[str, Any]], kind: str, object_id: str) -> dict[str, Any]:
    """The object, or Stripe's 404 for it."""
    if object_id not in store:
        raise _missing(kind, object_id)
    return store[object_id]


@dataclass
class FakeStripe:
    """State and behaviour of the fake; `now` is Stripe's clock (seconds)."""

    now: int = 1_790_000_000
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    setup_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    idempotent: dict[str, Any] = field(default_factory=dict)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _tick(self) -> int:
        self.now += 1
        return self.now

    def emit(self, event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        event = {
            "id": self._id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": self._tick(),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": _copy(obj)},
        }
        self.events.append(event)
        return event

    # --- prices seeded directly (as if `catalog sync` had run) -----------------------------
    def add_price(self, lookup_key: str, amount: int, interval: str, currency: str = "usd") -> str:
        product = self.products.setdefault(
            "billfold_premium",
            {"id": "billfold_premium", "name": "Premium", "active": True, "metadata": {}},
        )
        price_id = self._id("price")
        self.prices[price_id] = {
            "id": price_id,
            "object": "price",
            "product": product["id"],
            "lookup_key": lookup_key,
            "currency": currency,
            "unit_amount": amount,
            "recurring": {"interval": interval, "interval_count": 1},
            "active": True,
        }
        return price_id

    # --- simulated customer actions ----------------------------------------------------------
    def complete_checkout(self, session_id: str) -> str:
        """The customer pays on the hosted page: a subscription starts; returns its id."""
        cs = self.sessions[session_id]
        if cs["status"] != "open":
            raise ValueError(f"checkout session {session_id} is {cs['status']}: it cannot be paid")
        price = self.prices[cs["price"]]
        start = self._tick()
        sub_id = self._id("sub")
        item = {
            "id": self._id("si"),
            "object": "subscription_item",
            "price": dict(price),
            "quantity": cs["quantity"],
            "subscription": sub_id,
            "current_period_start": start,
            "current_period_end": start + PERIOD[price["recurring"]["interval"]],
        }
        sub = {
            "id": sub_id,
            "object": "subscription",
            "customer": cs["customer"],
            "status": "active",
            "created": start,
            "currency": price["currency"],
            "cancel_at_period_end": False,
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "trial_end": None,
            "latest_invoice": None,
            "metadata": dict(cs["subscription_metadata"]),
            "items": {"object": "list", "data": [item], "has_more": False},
        }
        self.subscriptions[sub_id] = sub
        cs.update(status="complete", subscription=sub_id, payment_status="paid")
        self.emit("customer.subscription.created", sub)
        self._invoice(sub, paid=True, reason="subscription_create")
        self.emit("checkout.session.completed", self.session_json(cs))
        return sub_id

    def _invoice(self, sub: dict[str, Any], *, paid: bool, reason: str) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        amount = item["price"]["unit_amount"] * item["quantity"]
        invoice = {
            "id": self._id("in"),
            "object": "invoice",
            "customer": sub["customer"],
            "status": "paid" if paid else "open",
            "billing_reason": reason,
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "currency": sub["currency"],
            "created": self.now,
            "hosted_invoice_url": None,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": sub["id"], "metadata": {}},
            },
        }
        self.invoices.append(invoice)
        sub["latest_invoice"] = invoice["id"]
        if paid:
            self.emit("invoice.paid", invoice)
            self.emit("invoice.payment_succeeded", invoice)
        else:
            self.emit("invoice.payment_failed", invoice)
        return invoice

    def end_period(self, sub_id: str, *, payment_fails: bool = False) -> None:
        """Time passes the period end: renew (paid or failed), or end a canceling one."""
        sub = self.subscriptions[sub_id]
        item = sub["items"]["data"][0]
        self.now = max(self.now, item["current_period_end"])
        if sub["cancel_at_period_end"]:
            sub.update(status="canceled", ended_at=self._tick(), canceled_at=sub["canceled_at"])
            self.emit("customer.subscription.deleted", sub)
            return
        length = item["current_period_end"] - item["current_period_start"]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += length
        if payment_fails:
            sub["status"] = "past_due"
        self._tick()
        self.emit("customer.subscription.updated", sub)
        self._invoice(sub, paid=not payment_fails, reason="subscription_cycle")

    def deliverable(self) -> list[dict[str, Any]]:
        return list(self.events)

    def session_json(self, cs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: v for k, v in cs.items() if k not in ("price", "quantity", "subscription_metadata")
        }


class _FakeCapability:
    def __init__(self, owner: FakeStripeGateway) -> None:
        self._owner = owner
        self.stripe = owner.stripe

    def _call(self, name: str) -> None:
        self._owner.record_call(name)

    def _replay(self, key: str, request: str) -> Any:
        """What the first call with this key answered; Stripe refuses the key for another
        request (another endpoint or other parameters)."""
        if not key.strip():
            raise ValueError("an idempotency key derived from billfold's ids is required")
        found = self.stripe.idempotent.get(key)
        if found is None:
            return None
        first_request, value = found
        if first_request != request:
            raise IdempotencyConflict(
                "Keys for idempotent requests can only be used with the same parameters they "
                "were first used with."
            )
        return value

    def _remember(self, key: str, request: str, answer: T) -> T:
        """Keep the answer for a replay of this request (Stripe keeps the response, not the
        object: a replay shows the object as it was then)."""
        self.stripe.idempotent[key] = (request, answer)
        return answer


# --- billfold's types, built by hand from the fake's objects ---------------------------------


def customer_info(c: Mapping[str, Any]) -> CustomerInfo:
    return CustomerInfo(
        id=c["id"],
        email=c.get("email"),
        name=c.get("name"),
        default_payment_method_id=c["invoice_settings"]["default_payment_method"],
        deleted=bool(c.get("deleted")),
        metadata=dict(c.get("metadata") or {}),
    )


def session_info(cs: Mapping[str, Any]) -> CheckoutSessionInfo:
    return CheckoutSessionInfo(
        id=cs["id"],
        url=cs["url"],
        status=cs["status"],
        mode=cs["mode"],
        customer_id=cs["customer"],
        subscription_id=cs["subscription"],
        client_reference_id=cs["client_reference_id"],
        metadata=dict(cs["metadata"]),
        payment_intent_id=cs.get("payment_intent"),
        setup_intent_id=cs.get("setup_intent"),
        payment_status=cs["payment_status"],
        amount_total=cs.get("amount_total"),
        currency=cs.get("currency"),
    )


def subscription_snapshot(sub: Mapping[str, Any]) -> SubscriptionSnapshot:
    item = sub["items"]["data"][0]
    price = item["price"]
    return SubscriptionSnapshot(
        id=sub["id"],
        customer_id=sub["customer"],
        status=sub["status"],
        item_id=item["id"],
        price_id=price["id"],
        product_id=price["product"],
        lookup_key=price.get("lookup_key"),
        interval=price["recurring"]["interval"],
        currency=price["currency"],
        unit_amount=price["unit_amount"],
        quantity=item["quantity"],
        current_period_start=_when(item["current_period_start"]),
        current_period_end=_when(item["current_period_end"]),
        cancel_at_period_end=sub["cancel_at_period_end"],
        cancel_at=_when(sub["cancel_at"]),
        canceled_at=_when(sub["canceled_at"]),
        ended_at=_when(sub["ended_at"]),
        trial_end=_when(sub["trial_end"]),
        created=sub["created"],
        latest_invoice_id=sub["latest_invoice"],
        metadata=dict(sub["metadata"]),
        raw=_copy(sub),
    )


def product_info(p: Mapping[str, Any]) -> ProductInfo:
    return ProductInfo(
        id=p["id"],
        name=p["name"],
        description=p.get("description"),
        active=p["active"],
        metadata=dict(p["metadata"]),
    )


def price_info(p: Mapping[str, Any]) -> PriceInfo:
    return PriceInfo(
        id=p["id"],
        product_id=p["product"],
        lookup_key=p["lookup_key"],
        currency=p["currency"],
        unit_amount=p["unit_amount"],
        interval=(p["recurring"] or {}).get("interval"),
        active=p["active"],
    )


def payment_method_info(pm: Mapping[str, Any]) -> PaymentMethodInfo:
    if pm["type"] == "card":
        card = pm["card"]
        return PaymentMethodInfo(
            id=pm["id"],
            type="card",
            customer_id=pm["customer"],
            brand=card["brand"],
            last4=card["last4"],
            exp_month=card["exp_month"],
            exp_year=card["exp_year"],
        )
    bank = pm["us_bank_account"]
    return PaymentMethodInfo(
        id=pm["id"],
        type=pm["type"],
        customer_id=pm["customer"],
        last4=bank["last4"],
        bank_name=bank["bank_name"],
    )


def setup_intent_info(si: Mapping[str, Any]) -> SetupIntentInfo:
    action = si["next_action"]
    return SetupIntentInfo(
        id=si["id"],
        status=si["status"],
        client_secret=si["client_secret"],
        customer_id=si["customer"],
        payment_method_id=si["payment_method"],
        next_action=action["type"] if action else None,
        microdeposit_type=(
            action["verify_with_microdeposits"]["microdeposit_type"] if action else None
        ),
        metadata=dict(si["metadata"]),
    )


def payment_intent_info(pi: Mapping[str, Any]) -> PaymentIntentInfo:
    error = pi["last_payment_error"] or {}
    return PaymentIntentInfo(
        id=pi["id"],
        status=pi["status"],
        amount=pi["amount"],
        currency=pi["currency"],
        client_secret=pi["client_secret"],
        customer_id=pi["customer"],
        payment_method_id=pi["payment_method"],
        latest_charge_id=pi["latest_charge"],
        last_error_code=error.get("code"),
        decline_code=error.get("decline_code"),
        metadata=dict(pi["metadata"]),
    )


def refund_info(r: Mapping[str, Any]) -> RefundInfo:
    return RefundInfo(
        id=r["id"],
        status=r["status"],
        amount=r["amount"],
        currency=r["currency"],
        payment_intent_id=r["payment_intent"],
        charge_id=r["charge"],
        reason=r["reason"],
        metadata=dict(r["metadata"]),
    )


def invoice_info(i: Mapping[str, Any]) -> InvoiceInfo:
    return InvoiceInfo(
        id=i["id"],
        status=i["status"],
        customer_id=i["customer"],
        subscription_id=i["parent"]["subscription_details"]["subscription"],
        amount_due=i["amount_due"],
        amount_paid=i["amount_paid"],
        currency=i["currency"],
        hosted_invoice_url=i["hosted_invoice_url"],
        billing_reason=i["billing_reason"],
        created=i["created"],
    )


# --- one fake per capability ------------------------------------------------------------------


class FakeCustomers(_FakeCapability):
    async def create(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> CustomerInfo:
        self._call("create_customer")
        request = _request("create_customer", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        customer_id = self.stripe._id("cus")
        customer = {
            "id": customer_id,
            "object": "customer",
            "email": email,
            "name": name,
            "metadata": dict(metadata),
            "created": self.stripe._tick(),
            "invoice_settings": {"default_payment_method": None},
        }
        self.stripe.customers[customer_id] = customer
        # No `customer.created` event: billfold handles none, and the domain tests count events.
        return self._remember(idempotency_key, request, customer_info(customer))

    def _get(self, customer_id: str) -> dict[str, Any]:
        return _find(self.stripe.customers, "customer", customer_id)

    async def retrieve(self, customer_id: str) -> CustomerInfo:
        self._call("retrieve_customer")
        return customer_info(self._get(customer_id))

    async def set_default_payment_method(
        self, customer_id: str, payment_method_id: str
    ) -> CustomerInfo:
        self._call("set_default_payment_method")
        customer = self._get(customer_id)
        pm = self.stripe.payment_methods.get(payment_method_id)
        if pm is None or pm["customer"] != customer_id:
            raise ValidationFailed(
                f"The customer does not have a payment method with the ID {payment_method_id}."
            )
        customer["invoice_settings"]["default_payment_method"] = payment_method_id
        self.stripe.emit("customer.updated", customer)
        return customer_info(customer)

    async def list(self) -> list[CustomerInfo]:
        self._call("list_customers")
        live = [c for c in self.stripe.customers.values() if not c.get("deleted")]
        return [customer_info(c) for c in reversed(live)]

    async def delete(self, customer_id: str) -> CustomerInfo:
        self._call("delete_customer")
        customer = self._get(customer_id)
        if customer.get("deleted"):
            raise _missing("customer", customer_id)  # Stripe: no such customer any more
        customer["deleted"] = True
        return customer_info(customer)


class FakeCheckout(_FakeCapability):
    async def create_session(
        self,
        *,
        mode: CheckoutMode,
        customer_id: str,
        success_url: str,
        cancel_url: str,
        client_reference_id: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        line_items: Sequence[LineItem] = (),
        allow_promotion_codes: bool = False,
        trial_period_days: int | None = None,
        currency: str | None = None,
        payment_method_types: Sequence[str] = (),
    ) -> CheckoutSessionInfo:
        self._call("create_checkout_session")
        request = _request("create_checkout_session", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        if mode == "setup" and (line_items or not currency):
            raise ValidationFailed("A setup-mode Checkout session takes a currency, no line items")
        if mode != "setup" and not line_items:
            raise ValidationFailed("line_items is required", field="line_items")
        amount_total = 0
        for n, item in enumerate(line_items):
            if item.price_id is not None:
                price = self.stripe.prices.get(item.price_id)
                if price is None:
                    # Stripe's 400 with code resource_missing: billfold's NotFound.
                    raise NotFound(
                        f"No such price: '{item.price_id}'", field=f"line_items[{n}][price]"
                    )
                amount_total += price["unit_amount"] * item.quantity
                currency = currency or price["currency"]
            else:
                amount_total += (item.amount or 0) * item.quantity
                currency = currency or item.currency
        session_id = self.stripe._id("cs_test")
        first = line_items[0] if line_items else None
        cs = {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "status": "open",
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "customer": customer_id,
            "subscription": None,
            "payment_intent": None,
            "setup_intent": None,
            "client_reference_id": client_reference_id,
            "metadata": dict(metadata),
            "allow_promotion_codes": allow_promotion_codes,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "amount_total": None if mode == "setup" else amount_total,
            "currency": currency,
            "price": first.price_id if first else None,
            "quantity": first.quantity if first else 0,
            "subscription_metadata": dict(metadata),
        }
        self.stripe.sessions[session_id] = cs
        return self._remember(idempotency_key, request, session_info(cs))

    async def retrieve_session(self, session_id: str) -> CheckoutSessionInfo:
        self._call("retrieve_checkout_session")
        _find(self.stripe.sessions, "checkout.session", session_id)
        return session_info(self.stripe.sessions[session_id])

    async def expire_session(self, session_id: str) -> CheckoutSessionInfo:
        self._call("expire_checkout_session")
        cs = self.stripe.sessions.get(session_id)
        if cs is None:
            raise _missing("checkout.session", session_id)
        if cs["status"] != "open":
            raise ValidationFailed(
                "Only Checkout Sessions with a status of `open` can be expired, "
                f"this session has a status of `{cs['status']}`."
            )
        cs.update(status="expired", url=None)
        self.stripe.emit("checkout.session.expired", self.stripe.session_json(cs))
        return session_info(cs)


class FakeSubscriptions(_FakeCapability):
    def _get(self, subscription_id: str) -> dict[str, Any]:
        return _find(self.stripe.subscriptions, "subscription", subscription_id)

    async def retrieve(self, subscription_id: str) -> SubscriptionSnapshot:
        self._call("retrieve_subscription")
        return subscription_snapshot(self._get(subscription_id))

    async def list(self, *, customer_id: str | None = None) -> list[SubscriptionSnapshot]:
        self._call("list_subscriptions")
        return [
            subscription_snapshot(s)
            for s in reversed(self.stripe.subscriptions.values())
            if customer_id is None or s["customer"] == customer_id
        ]

    async def update(
        self,
        subscription_id: str,
        *,
        idempotency_key: str,
        cancel_at_period_end: bool | None = None,
        item_id: str | None = None,
        price_id: str | None = None,
        quantity: int | None = None,
        proration_behavior: ProrationBehavior | None = None,
    ) -> SubscriptionSnapshot:
        self._call("update_subscription")
        request = _request("update_subscription", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        sub = self._get(subscription_id)
        if sub["status"] == "canceled":
            raise ValidationFailed("A canceled subscription can only update its metadata")
        item = sub["items"]["data"][0]
        if cancel_at_period_end is not None:
            sub["cancel_at_period_end"] = cancel_at_period_end
            sub["cancel_at"] = item["current_period_end"] if cancel_at_period_end else None
            sub["canceled_at"] = self.stripe._tick() if cancel_at_period_end else None
        if price_id is not None:
            if price_id not in self.stripe.prices:
                raise NotFound(f"No such price: '{price_id}'", field="items[0][price]")
            if item_id is not None and item_id != item["id"]:
                raise ValidationFailed(f"No such subscription item: '{item_id}'")
            old = item["price"]
            item["price"] = dict(self.stripe.prices[price_id])
            if proration_behavior != "none":
                # The proration invoice items: credit for the old price, charge for the new one.
                self.stripe.invoices.append(
                    {
                        "id": self.stripe._id("ii"),
                        "object": "invoiceitem",
                        "proration": True,
                        "credited": old["id"],
                        "charged": price_id,
                    }
                )
        if quantity is not None:
            item["quantity"] = quantity
        self.stripe._tick()
        self.stripe.emit("customer.subscription.updated", sub)
        return self._remember(idempotency_key, request, subscription_snapshot(sub))

    async def cancel(self, subscription_id: str, *, idempotency_key: str) -> SubscriptionSnapshot:
        self._call("cancel_subscription")
        request = _request("cancel_subscription", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        sub = self._get(subscription_id)
        now = self.stripe._tick()
        sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at_period_end=False)
        self.stripe.emit("customer.subscription.deleted", sub)
        return self._remember(idempotency_key, request, subscription_snapshot(sub))


class FakePortal(_FakeCapability):
    async def create_session(self, *, customer_id: str, return_url: str) -> str:
        self._call("create_portal_session")
        _find(self.stripe.customers, "customer", customer_id)
        return f"https://billing.stripe.test/p/session/bps_{customer_id}"


class FakePaymentMethods(_FakeCapability):
    def _get(self, payment_method_id: str) -> dict[str, Any]:
        if payment_method_id in self.stripe.payment_methods:
            return self.stripe.payment_methods[payment_method_id]
        if payment_method_id in TEST_CARDS or payment_method_id in TEST_BANK_ACCOUNTS:
            # Like Stripe: a test id stands for a new PaymentMethod each time it is used.
            return self.new(payment_method_id)
        raise _missing("payment_method", payment_method_id)

    def new(self, test_id: str, *, bank: BankAccount | None = None) -> dict[str, Any]:
        pm: dict[str, Any] = {
            "id": self.stripe._id("pm"),
            "object": "payment_method",
            "customer": None,
            "created": self.stripe._tick(),
            "metadata": {},
            "billing_details": {"name": bank.holder_name if bank else None},
        }
        if test_id in TEST_CARDS:
            brand, last4, decline = TEST_CARDS[test_id]
            pm.update(
                type="card",
                card={"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034},
                _decline=decline,
            )
        else:
            last4 = bank.account_number[-4:] if bank else TEST_BANK_ACCOUNTS[test_id]
            pm.update(
                type="us_bank_account",
                us_bank_account={"bank_name": "STRIPE TEST BANK", "last4": last4},
                _verified=bank is None,
                _decline=None,
            )
        self.stripe.payment_methods[pm["id"]] = pm
        return pm

    async def list(self, customer_id: str, *, type: str | None = None) -> list[PaymentMethodInfo]:
        self._call("list_payment_methods")
        _find(self.stripe.customers, "customer", customer_id)
        return [
            payment_method_info(pm)
            for pm in reversed(self.stripe.payment_methods.values())
            if pm["customer"] == customer_id and (type is None or pm["type"] == type)
        ]

    async def retrieve(self, payment_method_id: str) -> PaymentMethodInfo:
        self._call("retrieve_payment_method")
        return payment_method_info(self._get(payment_method_id))

    def attach_now(self, payment_method_id: str, customer_id: str) -> dict[str, Any]:
        _find(self.stripe.customers, "customer", customer_id)
        if payment_method_id in DECLINED_ON_ATTACH:
            # Attaching checks the card with the issuer, which refuses this one outright.
            raise PaymentFailed(
                "Your card was declined.",
                details={"code": "card_declined", "decline_code": "generic_decline"},
            )
        pm = self._get(payment_method_id)
        pm["customer"] = customer_id
        self.stripe.emit("payment_method.attached", pm)
        return pm

    async def attach(
        self, payment_method_id: str, *, customer_id: str, idempotency_key: str
    ) -> PaymentMethodInfo:
        self._call("attach_payment_method")
        request = _request("attach_payment_method", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        attached = self.attach_now(payment_method_id, customer_id)
        return self._remember(idempotency_key, request, payment_method_info(attached))

    async def detach(self, payment_method_id: str) -> PaymentMethodInfo:
        self._call("detach_payment_method")
        pm = self._get(payment_method_id)
        if pm["customer"] is None:
            raise ValidationFailed(
                f"The payment method {payment_method_id} is not attached to a customer."
            )
        pm["customer"] = None
        self.stripe.emit("payment_method.detached", pm)
        return payment_method_info(pm)


class FakeSetupIntents(_FakeCapability):
    def _get(self, setup_intent_id: str) -> dict[str, Any]:
        return _find(self.stripe.setup_intents, "setup_intent", setup_intent_id)

    async def create(
        self,
        *,
        customer_id: str,
        method: SetupMethod,
        metadata: Mapping[str, str],
        idempotency_key: str,
        payment_method_id: str | None = None,
        bank_account: BankAccount | None = None,
    ) -> SetupIntentInfo:
        self._call("create_setup_intent")
        request = _request("create_setup_intent", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        _find(self.stripe.customers, "customer", customer_id)
        intent_id = self.stripe._id("seti")
        si: dict[str, Any] = {
            "id": intent_id,
            "object": "setup_intent",
            "customer": customer_id,
            "client_secret": f"{intent_id}_secret_fake",
            "payment_method": None,
            "payment_method_types": [method],
            "status": "requires_payment_method",
            "next_action": None,
            "usage": "off_session",
            "metadata": dict(metadata),
            "created": self.stripe._tick(),
        }
        self.stripe.setup_intents[intent_id] = si
        self.stripe.emit("setup_intent.created", si)
        methods = FakePaymentMethods(self._owner)
        if bank_account is not None:
            pm = methods.attach_now(
                methods.new("pm_usBankAccount_success", bank=bank_account)["id"], customer_id
            )
        elif payment_method_id is not None:
            pm = methods.attach_now(payment_method_id, customer_id)
        else:
            return self._remember(idempotency_key, request, setup_intent_info(si))
        si["payment_method"] = pm["id"]
        if pm.get("_verified", True):
            si["status"] = "succeeded"
            self.stripe.emit("setup_intent.succeeded", si)
        else:
            si["status"] = "requires_action"
            si["next_action"] = {
                "type": "verify_with_microdeposits",
                "verify_with_microdeposits": {"microdeposit_type": "descriptor_code"},
            }
            self.stripe.emit("setup_intent.requires_action", si)
        return self._remember(idempotency_key, request, setup_intent_info(si))

    async def retrieve(self, setup_intent_id: str) -> SetupIntentInfo:
        self._call("retrieve_setup_intent")
        return setup_intent_info(self._get(setup_intent_id))

    async def verify_microdeposits(
        self,
        setup_intent_id: str,
        *,
        amounts: Sequence[int] | None = None,
        descriptor_code: str | None = None,
    ) -> SetupIntentInfo:
        self._call("verify_microdeposits")
        si = self._get(setup_intent_id)
        if si["status"] != "requires_action":
            raise ValidationFailed(
                "This SetupIntent is not awaiting microdeposit verification "
                f"(its status is {si['status']})."
            )
        right = (amounts is not None and tuple(amounts) == MICRODEPOSIT_AMOUNTS) or (
            descriptor_code == MICRODEPOSIT_DESCRIPTOR_CODE
        )
        if not right:
            raise ValidationFailed(
                "The amounts provided do not match the amounts that were sent to the bank account."
            )
        self.stripe.payment_methods[si["payment_method"]]["_verified"] = True
        si.update(status="succeeded", next_action=None)
        self.stripe.emit("setup_intent.succeeded", si)
        return setup_intent_info(si)


class FakePaymentIntents(_FakeCapability):
    def _get(self, payment_intent_id: str) -> dict[str, Any]:
        return _find(self.stripe.payment_intents, "payment_intent", payment_intent_id)

    async def create_off_session(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        description: str | None = None,
    ) -> PaymentIntentInfo:
        self._call("create_payment_intent")
        request = _request("create_payment_intent", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        _find(self.stripe.customers, "customer", customer_id)
        if amount < 50:
            raise ValidationFailed("Amount must be at least $0.50 usd", field="amount")
        pm = FakePaymentMethods(self._owner)._get(payment_method_id)
        intent_id = self.stripe._id("pi")
        charge_id = self.stripe._id("ch")
        pi: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": customer_id,
            "client_secret": f"{intent_id}_secret_fake",
            "description": description,
            "payment_method": pm["id"],
            "latest_charge": charge_id,
            "last_payment_error": None,
            "metadata": dict(metadata),
            "status": "succeeded",
            "created": self.stripe._tick(),
            "_refunded": 0,
        }
        self.stripe.payment_intents[intent_id] = pi
        self.stripe.emit("payment_intent.created", pi)
        if pm["_decline"]:
            pi.update(
                status="requires_payment_method",
                payment_method=None,
                last_payment_error={"code": "card_declined", "decline_code": pm["_decline"]},
            )
            self.stripe.emit("payment_intent.payment_failed", pi)
        elif pm["type"] == "us_bank_account":
            pi["status"] = "processing"
            self.stripe.emit("payment_intent.processing", pi)
        else:
            pi["amount_received"] = amount
            self.stripe.emit("payment_intent.succeeded", pi)
        return self._remember(idempotency_key, request, payment_intent_info(pi))

    # --- payments domain: one-off charges with the customer present ---

    async def create_on_session(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        description: str | None = None,
        return_url: str | None = None,
    ) -> PaymentIntentInfo:
        """As off session (the fake's cards never ask for 3-D Secure)."""
        return await self.create_off_session(
            customer_id=customer_id,
            payment_method_id=payment_method_id,
            amount=amount,
            currency=currency,
            metadata=metadata,
            idempotency_key=f"on_session:{idempotency_key}",
            description=description,
        )

    async def retrieve(self, payment_intent_id: str) -> PaymentIntentInfo:
        self._call("retrieve_payment_intent")
        return payment_intent_info(self._get(payment_intent_id))

    async def find_by_metadata(self, key: str, value: str) -> PaymentIntentInfo | None:
        self._call("search_payment_intents")
        found = [
            pi for pi in self.stripe.payment_intents.values() if pi["metadata"].get(key) == value
        ]
        return payment_intent_info(max(found, key=lambda pi: pi["created"])) if found else None

    async def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> PaymentIntentInfo:
        self._call("cancel_payment_intent")
        pi = self._get(payment_intent_id)
        if pi["status"] in ("succeeded", "processing"):
            raise ValidationFailed(
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}."
            )
        if pi["status"] != "canceled":
            pi["status"] = "canceled"
            self.stripe.emit("payment_intent.canceled", pi)
        return payment_intent_info(pi)


class FakeRefunds(_FakeCapability):
    async def create(
        self,
        *,
        payment_intent_id: str,
        idempotency_key: str,
        amount: int | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundInfo:
        self._call("create_refund")
        request = _request("create_refund", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        pi = FakePaymentIntents(self._owner)._get(payment_intent_id)
        if pi["status"] != "succeeded":
            raise ValidationFailed(
                f"This PaymentIntent ({payment_intent_id}) does not have a successful charge "
                "to refund."
            )
        left = pi["amount"] - pi["_refunded"]
        wanted = left if amount is None else amount
        if wanted > left:
            raise ValidationFailed(
                f"Refund amount ({wanted}) is greater than unrefunded amount on charge ({left})",
                field="amount",
            )
        pi["_refunded"] += wanted
        refund_id = self.stripe._id("re")
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": wanted,
            "currency": pi["currency"],
            "payment_intent": payment_intent_id,
            "charge": pi["latest_charge"],
            "reason": reason,
            "status": "succeeded",
            "metadata": dict(metadata or {}),
            "created": self.stripe._tick(),
        }
        self.stripe.refunds[refund_id] = refund
        self.stripe.emit("refund.created", refund)
        return self._remember(idempotency_key, request, refund_info(refund))

    async def retrieve(self, refund_id: str) -> RefundInfo:
        self._call("retrieve_refund")
        _find(self.stripe.refunds, "refund", refund_id)
        return refund_info(self.stripe.refunds[refund_id])


class FakeDisputes(_FakeCapability):
    def _info(self, d: Mapping[str, Any]) -> DisputeInfo:
        return DisputeInfo(
            id=d["id"],
            status=d["status"],
            amount=d["amount"],
            currency=d["currency"],
            reason=d["reason"],
            charge_id=d["charge"],
            payment_intent_id=d["payment_intent"],
        )

    async def retrieve(self, dispute_id: str) -> DisputeInfo:
        self._call("retrieve_dispute")
        _find(self.stripe.disputes, "dispute", dispute_id)
        return self._info(self.stripe.disputes[dispute_id])

    async def list(self, *, payment_intent_id: str | None = None) -> list[DisputeInfo]:
        self._call("list_disputes")
        return [
            self._info(d)
            for d in reversed(self.stripe.disputes.values())
            if payment_intent_id is None or d["payment_intent"] == payment_intent_id
        ]


class FakeInvoices(_FakeCapability):
    def _all(self) -> list[dict[str, Any]]:
        return [i for i in self.stripe.invoices if i.get("object") == "invoice"]

    async def retrieve(self, invoice_id: str) -> InvoiceInfo:
        self._call("retrieve_invoice")
        for invoice in self._all():
            if invoice["id"] == invoice_id:
                return invoice_info(invoice)
        raise _missing("invoice", invoice_id)

    async def list(
        self, *, customer_id: str | None = None, subscription_id: str | None = None
    ) -> list[InvoiceInfo]:
        self._call("list_invoices")
        return [
            invoice_info(i)
            for i in reversed(self._all())
            if (customer_id is None or i["customer"] == customer_id)
            and (
                subscription_id is None
                or i["parent"]["subscription_details"]["subscription"] == subscription_id
            )
        ]


class FakeEvents(_FakeCapability):
    async def list(
        self, *, created_after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[StripeEvent]:
        self._call("list_events")
        for event in reversed(self.stripe.events):
            if created_after is not None and event["created"] < created_after:
                continue
            if types and event["type"] not in types:
                continue
            yield StripeEvent(
                id=event["id"], type=event["type"], created=event["created"], payload=event
            )


class FakeCatalog(_FakeCapability):
    async def retrieve_product(self, product_id: str) -> ProductInfo | None:
        self._call("retrieve_product")
        found = self.stripe.products.get(product_id)
        return None if found is None else product_info(found)

    async def upsert_product(
        self,
        product_id: str,
        *,
        name: str,
        description: str | None,
        active: bool,
        metadata: Mapping[str, str],
    ) -> ProductInfo:
        self._call("upsert_product")
        product = self.stripe.products.setdefault(
            product_id, {"id": product_id, "object": "product", "created": self.stripe._tick()}
        )
        product.update(name=name, description=description, active=active, metadata=dict(metadata))
        return product_info(product)

    async def prices_by_lookup_keys(self, lookup_keys: Sequence[str]) -> list[PriceInfo]:
        self._call("prices_by_lookup_keys")
        return [
            price_info(p)
            for p in self.stripe.prices.values()
            if p["lookup_key"] in lookup_keys and p["active"]
        ]

    async def create_price(
        self,
        *,
        product_id: str,
        currency: str,
        unit_amount: int,
        interval: str | None,
        lookup_key: str,
        nickname: str | None,
        idempotency_key: str,
    ) -> PriceInfo:
        self._call("create_price")
        request = _request("create_price", locals())
        if (found := self._replay(idempotency_key, request)) is not None:
            return found  # Stripe replays its first answer
        if product_id not in self.stripe.products:
            raise NotFound(f"No such product: '{product_id}'", field="product")
        for p in self.stripe.prices.values():  # transfer_lookup_key
            if p["lookup_key"] == lookup_key:
                p["lookup_key"] = None
        price_id = self.stripe._id("price")
        self.stripe.prices[price_id] = {
            "id": price_id,
            "object": "price",
            "product": product_id,
            "lookup_key": lookup_key,
            "nickname": nickname,
            "currency": currency,
            "unit_amount": unit_amount,
            "recurring": {"interval": interval, "interval_count": 1} if interval else None,
            "active": True,
        }
        return self._remember(idempotency_key, request, price_info(self.stripe.prices[price_id]))

    async def set_price_active(self, price_id: str, active: bool) -> PriceInfo:
        self._call("set_price_active")
        _find(self.stripe.prices, "price", price_id)
        self.stripe.prices[price_id]["active"] = active
        return price_info(self.stripe.prices[price_id])


class FakeStripeGateway:
    """`StripeGateway` over a `FakeStripe`: one fake per capability. `fail_next` makes the next
    `failures_left` calls (of any capability) raise it."""

    def __init__(self, stripe: FakeStripe | None = None) -> None:
        self.stripe = stripe or FakeStripe()
        self.fail_next: Exception | None = None
        self.failures_left = 1
        self.customers = FakeCustomers(self)
        self.checkout = FakeCheckout(self)
        self.subscriptions = FakeSubscriptions(self)
        self.portal = FakePortal(self)
        self.payment_methods = FakePaymentMethods(self)
        self.setup_intents = FakeSetupIntents(self)
        self.payment_intents = FakePaymentIntents(self)
        self.refunds = FakeRefunds(self)
        self.disputes = FakeDisputes(self)
        self.invoices = FakeInvoices(self)
        self.events = FakeEvents(self)
        self.catalog = FakeCatalog(self)

    def record_call(self, name: str) -> None:
        self.stripe.calls.append(name)
        if self.fail_next is not None:
            exc = self.fail_next
            self.failures_left -= 1
            if self.failures_left <= 0:
                self.fail_next, self.failures_left = None, 1
            raise exc
