"""A small in-memory fake of billfold's `StripeGateway` (not of the stripe module) for unit
tests, plus Stripe's webhook signature scheme to deliver its events to billfold.

It keeps customers, Checkout sessions, subscriptions, products and prices, emits the events
real Stripe would (in Stripe's JSON shapes for API version 2026-10-28: periods on items, the
invoice's subscription under `parent.subscription_details`), and honours idempotency keys.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from billfold.errors import NotFound, ValidationFailed
from billfold.stripe.gateway import (
    CheckoutSessionInfo,
    PriceInfo,
    ProductInfo,
    StripeEvent,
    SubscriptionSnapshot,
    checkout_session_from_stripe,
    subscription_from_stripe,
)

MONTH = 30 * 86400
YEAR = 365 * 86400
PERIOD = {"month": MONTH, "year": YEAR, "week": 7 * 86400, "day": 86400}


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload` (t=..., v1=HMAC-SHA256 of "t.payload")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class FakeStripe:
    """State and behaviour of the fake; `now` is Stripe's clock (seconds)."""

    now: int = 1_790_000_000
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
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
            "data": {"object": json.loads(json.dumps(obj))},
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
        self.emit("checkout.session.completed", self._session_json(cs))
        return sub_id

    def _invoice(self, sub: dict[str, Any], *, paid: bool, reason: str) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        invoice = {
            "id": self._id("in"),
            "object": "invoice",
            "customer": sub["customer"],
            "status": "paid" if paid else "open",
            "billing_reason": reason,
            "amount_due": item["price"]["unit_amount"] * item["quantity"],
            "currency": sub["currency"],
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

    def _session_json(self, cs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: v for k, v in cs.items() if k not in ("price", "quantity", "subscription_metadata")
        }


class FakeStripeGateway:
    """`StripeGateway` over a `FakeStripe`."""

    def __init__(self, stripe: FakeStripe | None = None) -> None:
        self.stripe = stripe or FakeStripe()
        self.fail_next: Exception | None = None
        self.failures_left = 1  # how many calls `fail_next` fails

    def _call(self, name: str) -> None:
        self.stripe.calls.append(name)
        if self.fail_next is not None:
            exc = self.fail_next
            self.failures_left -= 1
            if self.failures_left <= 0:
                self.fail_next, self.failures_left = None, 1
            raise exc

    def _replay(self, key: str) -> Any:
        return self.stripe.idempotent.get(key)

    async def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> str:
        self._call("create_customer")
        if (found := self._replay(idempotency_key)) is not None:
            return str(found)
        customer_id = self.stripe._id("cus")
        self.stripe.customers[customer_id] = {"id": customer_id, "email": email, "name": name}
        self.stripe.idempotent[idempotency_key] = customer_id
        return customer_id

    async def create_checkout_session(
        self,
        *,
        customer_id: str,
        price_id: str,
        quantity: int,
        success_url: str,
        cancel_url: str,
        allow_promotion_codes: bool,
        client_reference_id: str,
        metadata: Mapping[str, str],
        trial_period_days: int | None,
        idempotency_key: str,
    ) -> CheckoutSessionInfo:
        self._call("create_checkout_session")
        if (found := self._replay(idempotency_key)) is not None:
            return checkout_session_from_stripe(
                self.stripe._session_json(self.stripe.sessions[found])
            )
        if price_id not in self.stripe.prices:
            raise ValidationFailed(f"No such price: '{price_id}'", field="line_items[0][price]")
        session_id = self.stripe._id("cs_test")
        cs = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": customer_id,
            "subscription": None,
            "client_reference_id": client_reference_id,
            "metadata": dict(metadata),
            "allow_promotion_codes": allow_promotion_codes,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "price": price_id,
            "quantity": quantity,
            "subscription_metadata": dict(metadata),
        }
        self.stripe.sessions[session_id] = cs
        self.stripe.idempotent[idempotency_key] = session_id
        return checkout_session_from_stripe(self.stripe._session_json(cs))

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        self._call("retrieve_checkout_session")
        if session_id not in self.stripe.sessions:
            raise NotFound(f"No such checkout.session: '{session_id}'")
        return checkout_session_from_stripe(
            self.stripe._session_json(self.stripe.sessions[session_id])
        )

    async def expire_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        self._call("expire_checkout_session")
        cs = self.stripe.sessions.get(session_id)
        if cs is None:
            raise NotFound(f"No such checkout.session: '{session_id}'")
        if cs["status"] != "open":
            raise ValidationFailed(
                "Only Checkout Sessions with a status of `open` can be expired, "
                f"this session has a status of `{cs['status']}`."
            )
        cs.update(status="expired", url=None)
        self.stripe.emit("checkout.session.expired", self.stripe._session_json(cs))
        return checkout_session_from_stripe(self.stripe._session_json(cs))

    async def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        self._call("create_portal_session")
        if customer_id not in self.stripe.customers:
            raise NotFound(f"No such customer: '{customer_id}'")
        return f"https://billing.stripe.test/p/session/bps_{customer_id}"

    def _sub(self, subscription_id: str) -> dict[str, Any]:
        if subscription_id not in self.stripe.subscriptions:
            raise NotFound(f"No such subscription: '{subscription_id}'")
        return self.stripe.subscriptions[subscription_id]

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionSnapshot:
        self._call("retrieve_subscription")
        return subscription_from_stripe(json.loads(json.dumps(self._sub(subscription_id))))

    async def list_subscriptions(
        self, *, customer_id: str | None = None
    ) -> list[SubscriptionSnapshot]:
        self._call("list_subscriptions")
        return [
            subscription_from_stripe(json.loads(json.dumps(s)))
            for s in self.stripe.subscriptions.values()
            if customer_id is None or s["customer"] == customer_id
        ]

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        cancel_at_period_end: bool | None = None,
        item_id: str | None = None,
        price_id: str | None = None,
        quantity: int | None = None,
        proration_behavior: str | None = None,
        idempotency_key: str,
    ) -> SubscriptionSnapshot:
        self._call("update_subscription")
        if (found := self._replay(idempotency_key)) is not None:
            return subscription_from_stripe(found)
        sub = self._sub(subscription_id)
        if sub["status"] == "canceled":
            raise ValidationFailed("A canceled subscription can only update its metadata")
        item = sub["items"]["data"][0]
        if cancel_at_period_end is not None:
            sub["cancel_at_period_end"] = cancel_at_period_end
            sub["cancel_at"] = item["current_period_end"] if cancel_at_period_end else None
            sub["canceled_at"] = self.stripe._tick() if cancel_at_period_end else None
        if price_id is not None:
            if price_id not in self.stripe.prices:
                raise ValidationFailed(f"No such price: '{price_id}'")
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
        self.stripe.idempotent[idempotency_key] = json.loads(json.dumps(sub))
        return subscription_from_stripe(json.loads(json.dumps(sub)))

    async def cancel_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> SubscriptionSnapshot:
        self._call("cancel_subscription")
        if (found := self._replay(idempotency_key)) is not None:
            return subscription_from_stripe(found)
        sub = self._sub(subscription_id)
        now = self.stripe._tick()
        sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at_period_end=False)
        self.stripe.emit("customer.subscription.deleted", sub)
        self.stripe.idempotent[idempotency_key] = json.loads(json.dumps(sub))
        return subscription_from_stripe(json.loads(json.dumps(sub)))

    async def list_events(
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

    async def retrieve_product(self, product_id: str) -> ProductInfo | None:
        self._call("retrieve_product")
        found = self.stripe.products.get(product_id)
        if found is None:
            return None
        return ProductInfo(
            id=found["id"],
            name=found["name"],
            description=found.get("description"),
            active=found["active"],
            metadata=dict(found["metadata"]),
        )

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
        self.stripe.products[product_id] = {
            "id": product_id,
            "name": name,
            "description": description,
            "active": active,
            "metadata": dict(metadata),
        }
        found = await self.retrieve_product(product_id)
        assert found is not None
        return found

    def _price_info(self, p: Mapping[str, Any]) -> PriceInfo:
        return PriceInfo(
            id=p["id"],
            product_id=p["product"],
            lookup_key=p["lookup_key"],
            currency=p["currency"],
            unit_amount=p["unit_amount"],
            interval=p["recurring"]["interval"],
            active=p["active"],
        )

    async def prices_by_lookup_keys(self, lookup_keys: Sequence[str]) -> list[PriceInfo]:
        self._call("prices_by_lookup_keys")
        return [
            self._price_info(p)
            for p in self.stripe.prices.values()
            if p["lookup_key"] in lookup_keys and p["active"]
        ]

    async def create_price(
        self,
        *,
        product_id: str,
        currency: str,
        unit_amount: int,
        interval: str,
        lookup_key: str,
        nickname: str | None,
        idempotency_key: str,
    ) -> PriceInfo:
        self._call("create_price")
        if (found := self._replay(idempotency_key)) is not None:
            return self._price_info(self.stripe.prices[found])
        for p in self.stripe.prices.values():  # transfer_lookup_key
            if p["lookup_key"] == lookup_key:
                p["lookup_key"] = None
        price_id = self.stripe._id("price")
        self.stripe.prices[price_id] = {
            "id": price_id,
            "product": product_id,
            "lookup_key": lookup_key,
            "currency": currency,
            "unit_amount": unit_amount,
            "recurring": {"interval": interval, "interval_count": 1},
            "active": True,
        }
        self.stripe.idempotent[idempotency_key] = price_id
        return self._price_info(self.stripe.prices[price_id])

    async def set_price_active(self, price_id: str, active: bool) -> PriceInfo:
        self._call("set_price_active")
        self.stripe.prices[price_id]["active"] = active
        return self._price_info(self.stripe.prices[price_id])
