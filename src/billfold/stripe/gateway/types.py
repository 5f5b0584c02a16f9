"""billfold's view of Stripe objects: frozen dataclasses, and the parsers that build them from
Stripe's JSON (API version 2026-10-28). No SDK object ever leaves the gateway package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]
CheckoutMode = Literal["subscription", "payment", "setup"]


def from_epoch(value: Any) -> datetime | None:
    """A Stripe timestamp (seconds) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def id_of(value: Any) -> str | None:
    """An expandable field: either the id itself or the expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return None


def _metadata(data: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (data.get("metadata") or {}).items()}


# --- what billfold asks for -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineItem:
    """One Checkout line: an existing price, or an ad-hoc amount (`price_data`) for `payment`
    mode (a credit package: `amount` minor units of `currency`, named `name`)."""

    quantity: int = 1
    price_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.price_id is None) == (self.amount is None):
            raise ValueError("a line item names either a price id or an amount")
        if self.amount is not None and (self.currency is None or self.name is None):
            raise ValueError("an amount line item needs a currency and a name")


@dataclass(frozen=True, slots=True)
class BankAccount:
    """A US bank account typed in by the customer (verified with microdeposits)."""

    holder_name: str
    routing_number: str
    account_number: str


# --- what Stripe answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    id: str
    email: str | None
    name: str | None
    default_payment_method_id: str | None
    deleted: bool
    metadata: dict[str, str] = field(default_factory=dict)


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
    payment_intent_id: str | None = None
    setup_intent_id: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None


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
class PaymentMethodInfo:
    """A card (brand, last4, expiry) or a US bank account (bank name, last4, status)."""

    id: str
    type: str
    customer_id: str | None
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    bank_name: str | None = None
    status: str | None = None  # a bank account's verification status


@dataclass(frozen=True, slots=True)
class SetupIntentInfo:
    id: str
    status: str
    client_secret: str | None
    customer_id: str | None
    payment_method_id: str | None
    # "verify_with_microdeposits" while a bank account waits for its deposits.
    next_action: str | None
    microdeposit_type: str | None = None
    last_error_code: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PaymentIntentInfo:
    id: str
    status: str
    amount: int
    currency: str
    client_secret: str | None
    customer_id: str | None
    payment_method_id: str | None
    latest_charge_id: str | None
    last_error_code: str | None = None
    decline_code: str | None = None
    next_action: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundInfo:
    id: str
    status: str
    amount: int
    currency: str
    payment_intent_id: str | None
    charge_id: str | None
    reason: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DisputeInfo:
    id: str
    status: str
    amount: int
    currency: str
    reason: str | None
    charge_id: str | None
    payment_intent_id: str | None


@dataclass(frozen=True, slots=True)
class InvoiceInfo:
    id: str
    status: str | None
    customer_id: str | None
    subscription_id: str | None
    amount_due: int
    amount_paid: int
    currency: str
    hosted_invoice_url: str | None
    billing_reason: str | None
    created: int


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


# --- parsers ------------------------------------------------------------------------------------


def subscription_from_stripe(data: Mapping[str, Any]) -> SubscriptionSnapshot:
    """Parse a subscription JSON object (API version 2026-10-28: periods live on the items)."""
    items = ((data.get("items") or {}).get("data")) or []
    item: Mapping[str, Any] = items[0] if items else {}
    price: Mapping[str, Any] = item.get("price") or {}
    recurring: Mapping[str, Any] = price.get("recurring") or {}
    return SubscriptionSnapshot(
        id=str(data["id"]),
        customer_id=id_of(data.get("customer")) or "",
        status=str(data.get("status") or "incomplete"),
        item_id=id_of(item.get("id")),
        price_id=id_of(price),
        product_id=id_of(price.get("product")),
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
        latest_invoice_id=id_of(data.get("latest_invoice")),
        metadata=_metadata(data),
        raw=dict(data),
    )


def checkout_session_from_stripe(data: Mapping[str, Any]) -> CheckoutSessionInfo:
    return CheckoutSessionInfo(
        id=str(data["id"]),
        url=data.get("url"),
        status=data.get("status"),
        mode=data.get("mode"),
        customer_id=id_of(data.get("customer")),
        subscription_id=id_of(data.get("subscription")),
        client_reference_id=data.get("client_reference_id"),
        metadata=_metadata(data),
        payment_intent_id=id_of(data.get("payment_intent")),
        setup_intent_id=id_of(data.get("setup_intent")),
        payment_status=data.get("payment_status"),
        amount_total=data.get("amount_total"),
        currency=data.get("currency"),
    )


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills: `parent.subscription_details.subscription` since
    API version 2025-03-31 (older payloads had a top-level `subscription`)."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    found = id_of(details.get("subscription"))
    return found or id_of(invoice.get("subscription"))


def customer_from_stripe(data: Mapping[str, Any]) -> CustomerInfo:
    settings = data.get("invoice_settings") or {}
    return CustomerInfo(
        id=str(data["id"]),
        email=data.get("email"),
        name=data.get("name"),
        default_payment_method_id=id_of(settings.get("default_payment_method")),
        deleted=bool(data.get("deleted")),
        metadata=_metadata(data),
    )


def product_from_stripe(data: Mapping[str, Any]) -> ProductInfo:
    return ProductInfo(
        id=str(data["id"]),
        name=str(data.get("name") or ""),
        description=data.get("description"),
        active=bool(data.get("active", True)),
        metadata=_metadata(data),
    )


def price_from_stripe(data: Mapping[str, Any]) -> PriceInfo:
    recurring = data.get("recurring") or {}
    return PriceInfo(
        id=str(data["id"]),
        product_id=id_of(data.get("product")) or "",
        lookup_key=data.get("lookup_key"),
        currency=str(data.get("currency") or ""),
        unit_amount=data.get("unit_amount"),
        interval=recurring.get("interval"),
        active=bool(data.get("active", True)),
    )


def payment_method_from_stripe(data: Mapping[str, Any]) -> PaymentMethodInfo:
    kind = str(data.get("type") or "")
    card = data.get("card") or {}
    bank = data.get("us_bank_account") or {}
    if kind == "card":
        return PaymentMethodInfo(
            id=str(data["id"]),
            type=kind,
            customer_id=id_of(data.get("customer")),
            brand=card.get("brand"),
            last4=card.get("last4"),
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
        )
    networks = bank.get("status_details") or {}
    status = "blocked" if networks.get("blocked") else None
    return PaymentMethodInfo(
        id=str(data["id"]),
        type=kind,
        customer_id=id_of(data.get("customer")),
        last4=bank.get("last4"),
        bank_name=bank.get("bank_name"),
        status=status,
    )


def _next_action(data: Mapping[str, Any]) -> str | None:
    action = data.get("next_action") or {}
    kind = action.get("type")
    return str(kind) if kind else None


def setup_intent_from_stripe(data: Mapping[str, Any]) -> SetupIntentInfo:
    action = data.get("next_action") or {}
    microdeposits = action.get("verify_with_microdeposits") or {}
    error = data.get("last_setup_error") or {}
    return SetupIntentInfo(
        id=str(data["id"]),
        status=str(data.get("status") or ""),
        client_secret=data.get("client_secret"),
        customer_id=id_of(data.get("customer")),
        payment_method_id=id_of(data.get("payment_method")),
        next_action=_next_action(data),
        microdeposit_type=microdeposits.get("microdeposit_type"),
        last_error_code=error.get("code"),
        metadata=_metadata(data),
    )


def payment_intent_from_stripe(data: Mapping[str, Any]) -> PaymentIntentInfo:
    error = data.get("last_payment_error") or {}
    return PaymentIntentInfo(
        id=str(data["id"]),
        status=str(data.get("status") or ""),
        amount=int(data.get("amount") or 0),
        currency=str(data.get("currency") or ""),
        client_secret=data.get("client_secret"),
        customer_id=id_of(data.get("customer")),
        payment_method_id=id_of(data.get("payment_method")),
        latest_charge_id=id_of(data.get("latest_charge")),
        last_error_code=error.get("code"),
        decline_code=error.get("decline_code"),
        next_action=_next_action(data),
        metadata=_metadata(data),
    )


def refund_from_stripe(data: Mapping[str, Any]) -> RefundInfo:
    return RefundInfo(
        id=str(data["id"]),
        status=str(data.get("status") or ""),
        amount=int(data.get("amount") or 0),
        currency=str(data.get("currency") or ""),
        payment_intent_id=id_of(data.get("payment_intent")),
        charge_id=id_of(data.get("charge")),
        reason=data.get("reason"),
        metadata=_metadata(data),
    )


def dispute_from_stripe(data: Mapping[str, Any]) -> DisputeInfo:
    return DisputeInfo(
        id=str(data["id"]),
        status=str(data.get("status") or ""),
        amount=int(data.get("amount") or 0),
        currency=str(data.get("currency") or ""),
        reason=data.get("reason"),
        charge_id=id_of(data.get("charge")),
        payment_intent_id=id_of(data.get("payment_intent")),
    )


def invoice_from_stripe(data: Mapping[str, Any]) -> InvoiceInfo:
    return InvoiceInfo(
        id=str(data["id"]),
        status=data.get("status"),
        customer_id=id_of(data.get("customer")),
        subscription_id=invoice_subscription_id(data),
        amount_due=int(data.get("amount_due") or 0),
        amount_paid=int(data.get("amount_paid") or 0),
        currency=str(data.get("currency") or ""),
        hosted_invoice_url=data.get("hosted_invoice_url"),
        billing_reason=data.get("billing_reason"),
        created=int(data.get("created") or 0),
    )


def event_from_stripe(data: Mapping[str, Any]) -> StripeEvent:
    return StripeEvent(
        id=str(data["id"]),
        type=str(data.get("type") or ""),
        created=int(data.get("created") or 0),
        payload=dict(data),
    )
