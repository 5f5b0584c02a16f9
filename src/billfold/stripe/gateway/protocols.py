"""What billfold asks of Stripe: one small Protocol per capability, and `StripeGateway`, the
composite that domain code receives (`gateway.checkout.create_session(...)`).

Every call that creates a Stripe object or moves money takes a required `idempotency_key`,
derived by the caller from billfold's own ids, so a crash and a retry never make two objects.
(Not the portal: a portal session moves nothing and expires in minutes, so replaying one would
hand out a dead link. Updates that set a value, like `set_price_active`, are safe to repeat.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Literal, Protocol

from billfold.errors import ConfigurationError
from billfold.stripe.gateway.types import (
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
    StripeEvent,
    SubscriptionSnapshot,
)

SetupMethod = Literal["card", "us_bank_account"]


class CustomersGateway(Protocol):
    async def create(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> CustomerInfo:
        """Create a customer."""
        ...

    async def retrieve(self, customer_id: str) -> CustomerInfo:
        """A customer (a deleted one has `deleted=True`); NotFound when Stripe never had it."""
        ...

    async def set_default_payment_method(
        self, customer_id: str, payment_method_id: str
    ) -> CustomerInfo:
        """Make an attached payment method the one invoices and off-session charges use."""
        ...

    async def list(self) -> list[CustomerInfo]:
        """Every (not deleted) customer, newest first (reconcile looks for orphans)."""
        ...

    async def delete(self, customer_id: str) -> CustomerInfo:
        """Delete a customer (its subscriptions end); `deleted=True`. NotFound if never known."""
        ...


class CheckoutGateway(Protocol):
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
        """A Checkout session: `subscription` (the metadata is copied onto the subscription),
        `payment` (line items by price id or by amount) or `setup` (save a payment method;
        no line items, `currency` required)."""
        ...

    async def retrieve_session(self, session_id: str) -> CheckoutSessionInfo: ...

    async def expire_session(self, session_id: str) -> CheckoutSessionInfo:
        """Expire an open Checkout session (it can no longer be paid). Refused
        (ValidationFailed) when it is not open any more: read it back to see why."""
        ...


class SubscriptionsGateway(Protocol):
    async def retrieve(self, subscription_id: str) -> SubscriptionSnapshot: ...

    async def list(self, *, customer_id: str | None = None) -> list[SubscriptionSnapshot]:
        """Every subscription (any status), of one customer or of the whole account."""
        ...

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
    ) -> SubscriptionSnapshot: ...

    async def cancel(self, subscription_id: str, *, idempotency_key: str) -> SubscriptionSnapshot:
        """Cancel now (Stripe's DELETE /v1/subscriptions/:id)."""
        ...


class PortalGateway(Protocol):
    async def create_session(self, *, customer_id: str, return_url: str) -> str:
        """A billing portal session; returns its URL."""
        ...


class PaymentMethodsGateway(Protocol):
    async def list(self, customer_id: str, *, type: str | None = None) -> list[PaymentMethodInfo]:
        """The customer's attached payment methods (of one `type`, or all)."""
        ...

    async def retrieve(self, payment_method_id: str) -> PaymentMethodInfo: ...

    async def attach(
        self, payment_method_id: str, *, customer_id: str, idempotency_key: str
    ) -> PaymentMethodInfo:
        """Attach to a customer (a test id such as `pm_card_visa` makes a new one each time,
        so a retry passes the same key)."""
        ...

    async def detach(self, payment_method_id: str) -> PaymentMethodInfo: ...


class SetupIntentsGateway(Protocol):
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
        """Save a card or a US bank account for off-session use, confirmed at once when it
        names `payment_method_id` or a typed-in `bank_account` (which then waits for its
        microdeposits: `next_action == "verify_with_microdeposits"`)."""
        ...

    async def retrieve(self, setup_intent_id: str) -> SetupIntentInfo: ...

    async def verify_microdeposits(
        self,
        setup_intent_id: str,
        *,
        amounts: Sequence[int] | None = None,
        descriptor_code: str | None = None,
    ) -> SetupIntentInfo:
        """The two amounts (or the descriptor code) the customer read on their statement."""
        ...


class PaymentIntentsGateway(Protocol):
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
        """Charge a saved payment method now, without the customer (confirmed at once). A
        decline is not an error: the intent comes back `requires_payment_method` with
        `last_error_code`/`decline_code` (Stripe's 402 carries it)."""
        ...

    async def retrieve(self, payment_intent_id: str) -> PaymentIntentInfo: ...

    async def find_by_metadata(self, key: str, value: str) -> PaymentIntentInfo | None:
        """The newest intent whose `metadata[key]` is `value` (None: no intent was made).
        Stripe's search: an intent made in the last minute or so may not be found yet, so ask
        only about calls older than that (recovering an interrupted payment)."""
        ...

    async def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> PaymentIntentInfo:
        """Cancel an intent that has not succeeded (nothing will be charged)."""
        ...

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
        """Charge a saved payment method with the customer present (confirmed at once): a
        card that asks for 3-D Secure comes back `requires_action` with its `client_secret`
        for Stripe.js to finish; a decline is an answer, as in `create_off_session`."""
        ...


class RefundsGateway(Protocol):
    async def create(
        self,
        *,
        payment_intent_id: str,
        idempotency_key: str,
        amount: int | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundInfo:
        """Refund all of a payment intent's charge, or `amount` minor units of it."""
        ...

    async def retrieve(self, refund_id: str) -> RefundInfo: ...


class DisputesGateway(Protocol):
    async def retrieve(self, dispute_id: str) -> DisputeInfo: ...

    async def list(self, *, payment_intent_id: str | None = None) -> list[DisputeInfo]: ...


class InvoicesGateway(Protocol):
    async def retrieve(self, invoice_id: str) -> InvoiceInfo: ...

    async def list(
        self, *, customer_id: str | None = None, subscription_id: str | None = None
    ) -> list[InvoiceInfo]:
        """Invoices newest first."""
        ...


class EventsGateway(Protocol):
    def list(
        self, *, created_after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[StripeEvent]:
        """Events newest first, as Stripe's Events API pages them."""
        ...


class CatalogGateway(Protocol):
    """Products and prices, for `billfold catalog sync`."""

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
        interval: str | None,
        lookup_key: str,
        nickname: str | None,
        idempotency_key: str,
    ) -> PriceInfo:
        """A price that takes over `lookup_key` from any older price: recurring every
        `interval`, or one-time when `interval` is None (a credit package)."""
        ...

    async def set_price_active(self, price_id: str, active: bool) -> PriceInfo: ...


class StripeGateway(Protocol):
    """Everything billfold asks of Stripe, one attribute per capability."""

    @property
    def customers(self) -> CustomersGateway: ...
    @property
    def checkout(self) -> CheckoutGateway: ...
    @property
    def subscriptions(self) -> SubscriptionsGateway: ...
    @property
    def portal(self) -> PortalGateway: ...
    @property
    def payment_methods(self) -> PaymentMethodsGateway: ...
    @property
    def setup_intents(self) -> SetupIntentsGateway: ...
    @property
    def payment_intents(self) -> PaymentIntentsGateway: ...
    @property
    def refunds(self) -> RefundsGateway: ...
    @property
    def disputes(self) -> DisputesGateway: ...
    @property
    def invoices(self) -> InvoicesGateway: ...
    @property
    def events(self) -> EventsGateway: ...
    @property
    def catalog(self) -> CatalogGateway: ...


class HasStripeGateway(Protocol):
    """Anything carrying a configured gateway (billfold's `Container`)."""

    @property
    def stripe_gateway(self) -> StripeGateway | None: ...


def gateway_of(holder: HasStripeGateway) -> StripeGateway:
    """The holder's Stripe gateway (set by `create_app`)."""
    gateway = holder.stripe_gateway
    if gateway is None:
        raise ConfigurationError("no Stripe gateway configured")
    return gateway
