"""The Stripe gateway: what billfold asks of Stripe, in billfold's own types.

`StripeGateway` is the interface the domain code depends on; `StripeClientGateway` is the one
adapter that talks to Stripe (or the sandbox) through the official SDK's `*_async` methods. No SDK
object leaves this module: every answer is converted to the dataclasses below, and every SDK
error to a `billfold.errors` type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

import stripe

from billfold.config import Settings
from billfold.errors import (
    BillfoldError,
    ConfigurationError,
    IdempotencyConflict,
    NotFound,
    PaymentFailed,
    UpstreamUnavailable,
    ValidationFailed,
)

if TYPE_CHECKING:
    from billfold.container import Container

log = logging.getLogger("billfold.stripe")

ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]
# How long one Stripe call may take before it counts as Stripe being unavailable.
STRIPE_TIMEOUT_SECONDS = 30.0


def from_epoch(value: Any) -> datetime | None:
    """A Stripe timestamp (seconds) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def _id_of(value: Any) -> str | None:
    """An expandable field: either the id itself or the expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return None


# --- billfold's view of Stripe objects -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutSessionInfo:
    id: str
    url: str | None
    status: str | None
    mode: str | None
    customer_id: str | None
    subscription_id: str | None
    client_reference_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    """A Stripe subscription as billfold keeps it (one priced item; periods from that item)."""

    id: str
    customer_id: str
    status: str
    item_id: str | None
    price_id: str | None
    product_id: str | None
    lookup_key: str | None
    interval: str | None  # Stripe's "month" / "year" / ...
    currency: str | None
    unit_amount: int | None
    quantity: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None
    canceled_at: datetime | None
    ended_at: datetime | None
    trial_end: datetime | None
    created: int
    latest_invoice_id: str | None
    metadata: dict[str, str]
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: str
    name: str
    description: str | None
    active: bool
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class PriceInfo:
    id: str
    product_id: str
    lookup_key: str | None
    currency: str
    unit_amount: int | None
    interval: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """An event as Stripe sent it: its id, type, creation time and whole JSON body."""

    id: str
    type: str
    created: int
    payload: dict[str, Any]
    # What handlers' `prepare` hooks fetched before the event's transaction (by handler name).
    prepared: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def object(self) -> dict[str, Any]:
        data = self.payload.get("data") or {}
        obj = data.get("object") if isinstance(data, Mapping) else None
        return dict(obj) if isinstance(obj, Mapping) else {}


def subscription_from_stripe(data: Mapping[str, Any]) -> SubscriptionSnapshot:
    """Parse a subscription JSON object (API version 2026-10-28: periods live on the items)."""
    items = ((data.get("items") or {}).get("data")) or []
    item: Mapping[str, Any] = items[0] if items else {}
    price: Mapping[str, Any] = item.get("price") or {}
    recurring: Mapping[str, Any] = price.get("recurring") or {}
    return SubscriptionSnapshot(
        id=str(data["id"]),
        customer_id=_id_of(data.get("customer")) or "",
        status=str(data.get("status") or "incomplete"),
        item_id=_id_of(item.get("id")),
        price_id=_id_of(price),
        product_id=_id_of(price.get("product")),
        lookup_key=price.get("lookup_key"),
        interval=recurring.get("interval"),
        currency=price.get("currency") or data.get("currency"),
        unit_amount=price.get("unit_amount"),
        quantity=int(item.get("quantity") or 1),
        current_period_start=from_epoch(item.get("current_period_start")),
        current_period_end=from_epoch(item.get("current_period_end")),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        cancel_at=from_epoch(data.get("cancel_at")),
        canceled_at=from_epoch(data.get("canceled_at")),
        ended_at=from_epoch(data.get("ended_at")),
        trial_end=from_epoch(data.get("trial_end")),
        created=int(data.get("created") or 0),
        latest_invoice_id=_id_of(data.get("latest_invoice")),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        raw=dict(data),
    )


def checkout_session_from_stripe(data: Mapping[str, Any]) -> CheckoutSessionInfo:
    return CheckoutSessionInfo(
        id=str(data["id"]),
        url=data.get("url"),
        status=data.get("status"),
        mode=data.get("mode"),
        customer_id=_id_of(data.get("customer")),
        subscription_id=_id_of(data.get("subscription")),
        client_reference_id=data.get("client_reference_id"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills: `parent.subscription_details.subscription` since
    API version 2025-03-31 (older payloads had a top-level `subscription`)."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    found = _id_of(details.get("subscription"))
    return found or _id_of(invoice.get("subscription"))


def _product_from_stripe(data: Mapping[str, Any]) -> ProductInfo:
    return ProductInfo(
        id=str(data["id"]),
        name=str(data.get("name") or ""),
        description=data.get("description"),
        active=bool(data.get("active", True)),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def _price_from_stripe(data: Mapping[str, Any]) -> PriceInfo:
    recurring = data.get("recurring") or {}
    return PriceInfo(
        id=str(data["id"]),
        product_id=_id_of(data.get("product")) or "",
        lookup_key=data.get("lookup_key"),
        currency=str(data.get("currency") or ""),
        unit_amount=data.get("unit_amount"),
        interval=recurring.get("interval"),
        active=bool(data.get("active", True)),
    )


# --- the interface -------------------------------------------------------------------------


class StripeGateway(Protocol):
    """Everything billfold's subscription domain asks of Stripe."""

    async def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> str:
        """Create a customer; returns its id."""
        ...

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
        """A subscription-mode Checkout session for one price."""
        ...

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionInfo: ...

    async def expire_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        """Expire an open Checkout session (it can no longer be paid). Refused
        (ValidationFailed) when it is not open any more: read it back to see why."""
        ...

    async def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        """A billing portal session; returns its URL."""
        ...

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionSnapshot: ...

    async def list_subscriptions(
        self, *, customer_id: str | None = None
    ) -> list[SubscriptionSnapshot]:
        """Every subscription (any status), of one customer or of the whole account."""
        ...

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        cancel_at_period_end: bool | None = None,
        item_id: str | None = None,
        price_id: str | None = None,
        quantity: int | None = None,
        proration_behavior: ProrationBehavior | None = None,
        idempotency_key: str,
    ) -> SubscriptionSnapshot: ...

    async def cancel_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> SubscriptionSnapshot:
        """Cancel now (Stripe's DELETE /v1/subscriptions/:id)."""
        ...

    def list_events(
        self, *, created_after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[StripeEvent]:
        """Events newest first, as Stripe's Events API pages them."""
        ...

    async def retrieve_product(self, product_id: str) -> ProductInfo | None: ...

    async def upsert_product(
        self,
        product_id: str,
        *,
        name: str,
        description: str | None,
        active: bool,
        metadata: Mapping[str, str],
    ) -> ProductInfo:
        """Create the product with this id, or update it to these values."""
        ...

    async def prices_by_lookup_keys(self, lookup_keys: Sequence[str]) -> list[PriceInfo]: ...

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
        """A recurring price that takes over `lookup_key` from any older price."""
        ...

    async def set_price_active(self, price_id: str, active: bool) -> PriceInfo: ...


def gateway_of(container: Container) -> StripeGateway:
    """The container's Stripe gateway (set by `create_app`)."""
    gateway = container.stripe_gateway
    if gateway is None:
        raise ConfigurationError("no Stripe gateway configured")
    return gateway


# --- the adapter ---------------------------------------------------------------------------


def _wire_value(value: Any) -> Any:
    # The SDK turns Stripe's `*_decimal` strings into Decimal; give them back as on the wire.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _as_dict(obj: Any) -> dict[str, Any]:
    """An SDK object as the plain JSON Stripe sent (so it can be stored and compared)."""
    plain = obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)
    result: dict[str, Any] = json.loads(json.dumps(plain, default=_wire_value))
    return result


def translate_stripe_error(exc: stripe.StripeError) -> BillfoldError:
    """An SDK error as billfold's own: card declines are PaymentFailed, Stripe being down or
    unreachable is UpstreamUnavailable, a refused request is ValidationFailed or NotFound."""
    message = exc.user_message or str(exc) or "Stripe error"
    if isinstance(exc, stripe.CardError):
        return PaymentFailed(message, details={"decline_code": getattr(exc, "code", None)})
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return UpstreamUnavailable(f"Stripe is unreachable: {message}")
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ConfigurationError(f"Stripe refused billfold's API key: {message}")
    if isinstance(exc, stripe.IdempotencyError):
        return IdempotencyConflict(message)
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.http_status == 404 or exc.code == "resource_missing":
            return NotFound(message, field=getattr(exc, "param", None))
        return ValidationFailed(message, field=getattr(exc, "param", None))
    if exc.http_status is not None and exc.http_status < 500:
        return ValidationFailed(message)
    return UpstreamUnavailable(f"Stripe failed: {message}")


class StripeClientGateway:
    """`StripeGateway` over the official SDK (`stripe.StripeClient`, async methods only: the
    sandbox may be served by the same event loop, where a blocking call would deadlock)."""

    def __init__(self, settings: Settings, *, client: stripe.StripeClient | None = None) -> None:
        if client is None:
            base = settings.stripe_api_base
            client = stripe.StripeClient(
                settings.stripe_api_key,
                base_addresses={"api": base} if base is not None else None,
                max_network_retries=2,
                # Async-only on purpose: a blocking call would stall the event loop (and
                # deadlock against the sandbox when it is served by this very process).
                http_client=stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS),
            )
        self._client = client
        self._v1 = client.v1

    async def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> str:
        params: dict[str, Any] = {"metadata": dict(metadata)}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        try:
            customer = await self._v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return str(customer.id)

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
        subscription_data: dict[str, Any] = {"metadata": dict(metadata)}
        if trial_period_days:
            subscription_data["trial_period_days"] = trial_period_days
        params: dict[str, Any] = {
            "mode": "subscription",
            "customer": customer_id,
            "line_items": [{"price": price_id, "quantity": quantity}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id,
            "metadata": dict(metadata),
            "subscription_data": subscription_data,
        }
        if allow_promotion_codes:
            params["allow_promotion_codes"] = True
        try:
            created = await self._v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return checkout_session_from_stripe(_as_dict(created))

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        try:
            found = await self._v1.checkout.sessions.retrieve_async(session_id)
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return checkout_session_from_stripe(_as_dict(found))

    async def expire_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        try:
            expired = await self._v1.checkout.sessions.expire_async(session_id)
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return checkout_session_from_stripe(_as_dict(expired))

    async def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        try:
            portal = await self._v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return str(portal.url)

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionSnapshot:
        try:
            found = await self._v1.subscriptions.retrieve_async(subscription_id)
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return subscription_from_stripe(_as_dict(found))

    async def list_subscriptions(
        self, *, customer_id: str | None = None
    ) -> list[SubscriptionSnapshot]:
        params: dict[str, Any] = {"status": "all", "limit": 100}
        if customer_id:
            params["customer"] = customer_id
        found: list[SubscriptionSnapshot] = []
        try:
            page = await self._v1.subscriptions.list_async(params)  # type: ignore[arg-type]
            async for sub in page.auto_paging_iter():
                found.append(subscription_from_stripe(_as_dict(sub)))
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return found

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        cancel_at_period_end: bool | None = None,
        item_id: str | None = None,
        price_id: str | None = None,
        quantity: int | None = None,
        proration_behavior: ProrationBehavior | None = None,
        idempotency_key: str,
    ) -> SubscriptionSnapshot:
        params: dict[str, Any] = {}
        if cancel_at_period_end is not None:
            params["cancel_at_period_end"] = cancel_at_period_end
        if price_id is not None or quantity is not None:
            item: dict[str, Any] = {}
            if item_id:
                item["id"] = item_id
            if price_id is not None:
                item["price"] = price_id
            if quantity is not None:
                item["quantity"] = quantity
            params["items"] = [item]
        if proration_behavior is not None:
            params["proration_behavior"] = proration_behavior
        try:
            updated = await self._v1.subscriptions.update_async(
                subscription_id,
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return subscription_from_stripe(_as_dict(updated))

    async def cancel_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> SubscriptionSnapshot:
        try:
            canceled = await self._v1.subscriptions.cancel_async(
                subscription_id, None, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return subscription_from_stripe(_as_dict(canceled))

    async def list_events(
        self, *, created_after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[StripeEvent]:
        params: dict[str, Any] = {"limit": 100}
        if created_after is not None:
            params["created"] = {"gte": created_after}
        if types:
            params["types"] = list(types)
        try:
            page = await self._v1.events.list_async(params)  # type: ignore[arg-type]
            async for event in page.auto_paging_iter():
                body = _as_dict(event)
                yield StripeEvent(
                    id=str(body["id"]),
                    type=str(body.get("type") or ""),
                    created=int(body.get("created") or 0),
                    payload=body,
                )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc

    async def retrieve_product(self, product_id: str) -> ProductInfo | None:
        try:
            found = await self._v1.products.retrieve_async(product_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404 or exc.code == "resource_missing":
                return None
            raise translate_stripe_error(exc) from exc
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return _product_from_stripe(_as_dict(found))

    async def upsert_product(
        self,
        product_id: str,
        *,
        name: str,
        description: str | None,
        active: bool,
        metadata: Mapping[str, str],
    ) -> ProductInfo:
        params: dict[str, Any] = {"name": name, "active": active, "metadata": dict(metadata)}
        if description:
            params["description"] = description
        try:
            existing = await self.retrieve_product(product_id)
            if existing is None:
                created = await self._v1.products.create_async(
                    {"id": product_id, **params},  # type: ignore[typeddict-item]
                    {"idempotency_key": f"billfold-product-{product_id}"},
                )
                return _product_from_stripe(_as_dict(created))
            updated = await self._v1.products.update_async(
                product_id,
                params,  # type: ignore[arg-type]
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return _product_from_stripe(_as_dict(updated))

    async def prices_by_lookup_keys(self, lookup_keys: Sequence[str]) -> list[PriceInfo]:
        found: list[PriceInfo] = []
        keys = list(lookup_keys)
        try:
            # Stripe accepts at most 10 lookup keys per list call.
            for start in range(0, len(keys), 10):
                page = await self._v1.prices.list_async(
                    {"lookup_keys": keys[start : start + 10], "limit": 100}
                )
                async for price in page.auto_paging_iter():
                    found.append(_price_from_stripe(_as_dict(price)))
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return found

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
        params: dict[str, Any] = {
            "product": product_id,
            "currency": currency,
            "unit_amount": unit_amount,
            "recurring": {"interval": interval},
            "lookup_key": lookup_key,
            "transfer_lookup_key": True,
        }
        if nickname:
            params["nickname"] = nickname
        try:
            created = await self._v1.prices.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return _price_from_stripe(_as_dict(created))

    async def set_price_active(self, price_id: str, active: bool) -> PriceInfo:
        try:
            updated = await self._v1.prices.update_async(price_id, {"active": active})
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return _price_from_stripe(_as_dict(updated))
