"""The gateway over the official SDK: one adapter class per capability, all sharing one
`stripe.StripeClient` and using its `*_async` methods only (the sandbox may be served by the
same event loop, where a blocking call would deadlock). Every answer is converted to billfold's
types, every SDK error by `stripe_errors()`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billfold.config import Settings
from billfold.stripe.gateway.errors import is_missing, stripe_errors, translate_stripe_error
from billfold.stripe.gateway.protocols import SetupMethod
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
    checkout_session_from_stripe,
    customer_from_stripe,
    dispute_from_stripe,
    event_from_stripe,
    invoice_from_stripe,
    payment_intent_from_stripe,
    payment_method_from_stripe,
    price_from_stripe,
    product_from_stripe,
    refund_from_stripe,
    setup_intent_from_stripe,
    subscription_from_stripe,
)

# How long one Stripe call may take before it counts as Stripe being unavailable.
STRIPE_TIMEOUT_SECONDS = 30.0

if TYPE_CHECKING:
    # The SDK (tens of MB, a second of imports) loads when billfold first talks to Stripe, not
    # at every start: `import stripe` where it is used.
    import stripe
    from stripe._v1_services import V1Services


def _wire_value(value: Any) -> Any:
    # The SDK turns Stripe's `*_decimal` strings into Decimal; give them back as on the wire.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def as_dict(obj: Any) -> dict[str, Any]:
    """An SDK object as the plain JSON Stripe sent (so it can be stored and compared)."""
    import stripe

    plain = obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)
    result: dict[str, Any] = json.loads(json.dumps(plain, default=_wire_value))
    return result


def _keyed(idempotency_key: str) -> Any:
    # A blank key would let the SDK make up its own, and a retry after a crash a second object.
    if not idempotency_key.strip():
        raise ValueError("an idempotency key derived from billfold's ids is required")
    return {"idempotency_key": idempotency_key}


class _LazyClient:
    """The process's one `stripe.StripeClient`, made (and the SDK imported) on first use."""

    def __init__(self, settings: Settings, client: stripe.StripeClient | None) -> None:
        self._settings = settings
        self._client = client

    @property
    def v1(self) -> V1Services:
        if self._client is None:
            self._client = sdk_client(self._settings)
        return self._client.v1


class _Adapter:
    def __init__(self, client: _LazyClient) -> None:
        self._client = client

    @property
    def _v1(self) -> V1Services:
        return self._client.v1


class SdkCustomers(_Adapter):
    async def create(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> CustomerInfo:
        params: Any = {"metadata": dict(metadata)}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        with stripe_errors():
            created = await self._v1.customers.create_async(params, _keyed(idempotency_key))
        return customer_from_stripe(as_dict(created))

    async def retrieve(self, customer_id: str) -> CustomerInfo:
        with stripe_errors():
            found = await self._v1.customers.retrieve_async(customer_id)
        return customer_from_stripe(as_dict(found))

    async def set_default_payment_method(
        self, customer_id: str, payment_method_id: str
    ) -> CustomerInfo:
        params: Any = {"invoice_settings": {"default_payment_method": payment_method_id}}
        with stripe_errors():
            updated = await self._v1.customers.update_async(customer_id, params)
        return customer_from_stripe(as_dict(updated))

    async def list(self) -> list[CustomerInfo]:
        with stripe_errors():
            page = await self._v1.customers.list_async({"limit": 100})
            return [customer_from_stripe(as_dict(c)) async for c in page.auto_paging_iter()]

    async def delete(self, customer_id: str) -> CustomerInfo:
        with stripe_errors():
            deleted = await self._v1.customers.delete_async(customer_id)
        return customer_from_stripe(as_dict(deleted))


class SdkCheckout(_Adapter):
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
        params: Any = {
            "mode": mode,
            "customer": customer_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id,
            "metadata": dict(metadata),
        }
        if line_items:
            params["line_items"] = [_line_item(item) for item in line_items]
        if mode == "subscription":
            subscription_data: dict[str, Any] = {"metadata": dict(metadata)}
            if trial_period_days:
                subscription_data["trial_period_days"] = trial_period_days
            params["subscription_data"] = subscription_data
        elif mode == "payment":
            params["payment_intent_data"] = {"metadata": dict(metadata)}
        else:
            params["setup_intent_data"] = {"metadata": dict(metadata)}
        if currency:
            params["currency"] = currency
        if payment_method_types:
            params["payment_method_types"] = list(payment_method_types)
        if allow_promotion_codes:
            params["allow_promotion_codes"] = True
        with stripe_errors():
            created = await self._v1.checkout.sessions.create_async(params, _keyed(idempotency_key))
        return checkout_session_from_stripe(as_dict(created))

    async def retrieve_session(self, session_id: str) -> CheckoutSessionInfo:
        with stripe_errors():
            found = await self._v1.checkout.sessions.retrieve_async(session_id)
        return checkout_session_from_stripe(as_dict(found))

    async def expire_session(self, session_id: str) -> CheckoutSessionInfo:
        with stripe_errors():
            expired = await self._v1.checkout.sessions.expire_async(session_id)
        return checkout_session_from_stripe(as_dict(expired))


def _line_item(item: LineItem) -> dict[str, Any]:
    if item.price_id is not None:
        return {"price": item.price_id, "quantity": item.quantity}
    return {
        "price_data": {
            "currency": item.currency,
            "unit_amount": item.amount,
            "product_data": {"name": item.name},
        },
        "quantity": item.quantity,
    }


class SdkSubscriptions(_Adapter):
    async def retrieve(self, subscription_id: str) -> SubscriptionSnapshot:
        with stripe_errors():
            found = await self._v1.subscriptions.retrieve_async(subscription_id)
        return subscription_from_stripe(as_dict(found))

    async def list(self, *, customer_id: str | None = None) -> list[SubscriptionSnapshot]:
        params: Any = {"status": "all", "limit": 100}
        if customer_id:
            params["customer"] = customer_id
        with stripe_errors():
            page = await self._v1.subscriptions.list_async(params)
            return [subscription_from_stripe(as_dict(s)) async for s in page.auto_paging_iter()]

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
        params: Any = {}
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
        with stripe_errors():
            updated = await self._v1.subscriptions.update_async(
                subscription_id, params, _keyed(idempotency_key)
            )
        return subscription_from_stripe(as_dict(updated))

    async def cancel(self, subscription_id: str, *, idempotency_key: str) -> SubscriptionSnapshot:
        with stripe_errors():
            canceled = await self._v1.subscriptions.cancel_async(
                subscription_id, None, _keyed(idempotency_key)
            )
        return subscription_from_stripe(as_dict(canceled))


class SdkPortal(_Adapter):
    async def create_session(self, *, customer_id: str, return_url: str) -> str:
        with stripe_errors():
            portal = await self._v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        return str(portal.url)


class SdkPaymentMethods(_Adapter):
    async def list(self, customer_id: str, *, type: str | None = None) -> list[PaymentMethodInfo]:
        params: Any = {"limit": 100}
        if type:
            params["type"] = type
        with stripe_errors():
            page = await self._v1.customers.payment_methods.list_async(customer_id, params)
            return [payment_method_from_stripe(as_dict(m)) async for m in page.auto_paging_iter()]

    async def retrieve(self, payment_method_id: str) -> PaymentMethodInfo:
        with stripe_errors():
            found = await self._v1.payment_methods.retrieve_async(payment_method_id)
        return payment_method_from_stripe(as_dict(found))

    async def attach(
        self, payment_method_id: str, *, customer_id: str, idempotency_key: str
    ) -> PaymentMethodInfo:
        with stripe_errors():
            attached = await self._v1.payment_methods.attach_async(
                payment_method_id, {"customer": customer_id}, _keyed(idempotency_key)
            )
        return payment_method_from_stripe(as_dict(attached))

    async def detach(self, payment_method_id: str) -> PaymentMethodInfo:
        with stripe_errors():
            detached = await self._v1.payment_methods.detach_async(payment_method_id)
        return payment_method_from_stripe(as_dict(detached))


class SdkSetupIntents(_Adapter):
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
        params: Any = {
            "customer": customer_id,
            "payment_method_types": [method],
            "usage": "off_session",
            "metadata": dict(metadata),
        }
        if method == "us_bank_account":
            params["payment_method_options"] = {
                "us_bank_account": {"verification_method": "microdeposits"}
            }
        if bank_account is not None:
            params["payment_method_data"] = {
                "type": "us_bank_account",
                "us_bank_account": {
                    "account_holder_type": "individual",
                    "routing_number": bank_account.routing_number,
                    "account_number": bank_account.account_number,
                },
                "billing_details": {"name": bank_account.holder_name},
            }
        elif payment_method_id is not None:
            params["payment_method"] = payment_method_id
        if "payment_method" in params or "payment_method_data" in params:
            params["confirm"] = True
            params["mandate_data"] = {"customer_acceptance": {"type": "offline"}}
        with stripe_errors():
            created = await self._v1.setup_intents.create_async(params, _keyed(idempotency_key))
        return setup_intent_from_stripe(as_dict(created))

    async def retrieve(self, setup_intent_id: str) -> SetupIntentInfo:
        with stripe_errors():
            found = await self._v1.setup_intents.retrieve_async(setup_intent_id)
        return setup_intent_from_stripe(as_dict(found))

    async def verify_microdeposits(
        self,
        setup_intent_id: str,
        *,
        amounts: Sequence[int] | None = None,
        descriptor_code: str | None = None,
    ) -> SetupIntentInfo:
        params: Any = {}
        if amounts is not None:
            params["amounts"] = list(amounts)
        if descriptor_code is not None:
            params["descriptor_code"] = descriptor_code
        with stripe_errors():
            verified = await self._v1.setup_intents.verify_microdeposits_async(
                setup_intent_id, params
            )
        return setup_intent_from_stripe(as_dict(verified))


class SdkPaymentIntents(_Adapter):
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
        params: Any = {
            "customer": customer_id,
            "payment_method": payment_method_id,
            "amount": amount,
            "currency": currency,
            "metadata": dict(metadata),
            "confirm": True,
            "off_session": True,
        }
        if description:
            params["description"] = description
        return await self._create_confirmed(params, idempotency_key)

    async def _create_confirmed(self, params: Any, idempotency_key: str) -> PaymentIntentInfo:
        import stripe

        try:
            created = await self._v1.payment_intents.create_async(params, _keyed(idempotency_key))
        except stripe.CardError as exc:
            # A decline is an answer, not a failure of the call: Stripe's 402 carries the intent.
            intent = exc.error.payment_intent if exc.error is not None else None
            if intent is None:
                raise translate_stripe_error(exc) from exc
            return payment_intent_from_stripe(as_dict(intent))
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc) from exc
        return payment_intent_from_stripe(as_dict(created))

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
        params: Any = {
            "customer": customer_id,
            "payment_method": payment_method_id,
            "amount": amount,
            "currency": currency,
            "metadata": dict(metadata),
            "confirm": True,
        }
        if description:
            params["description"] = description
        if return_url:
            params["return_url"] = return_url
        return await self._create_confirmed(params, idempotency_key)

    async def retrieve(self, payment_intent_id: str) -> PaymentIntentInfo:
        with stripe_errors():
            found = await self._v1.payment_intents.retrieve_async(payment_intent_id)
        return payment_intent_from_stripe(as_dict(found))

    async def find_by_metadata(self, key: str, value: str) -> PaymentIntentInfo | None:
        for part in (key, value):
            if not part or "'" in part or "\\" in part:
                raise ValueError(f"cannot search metadata by {part!r}")
        query = f"metadata['{key}']:'{value}'"
        with stripe_errors():
            page = await self._v1.payment_intents.search_async({"query": query, "limit": 10})
        found = [as_dict(intent) for intent in page.data]
        if not found:
            return None
        return payment_intent_from_stripe(max(found, key=lambda i: int(i.get("created") or 0)))

    async def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> PaymentIntentInfo:
        with stripe_errors():
            canceled = await self._v1.payment_intents.cancel_async(
                payment_intent_id, None, _keyed(idempotency_key)
            )
        return payment_intent_from_stripe(as_dict(canceled))


class SdkRefunds(_Adapter):
    async def create(
        self,
        *,
        payment_intent_id: str,
        idempotency_key: str,
        amount: int | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundInfo:
        params: Any = {"payment_intent": payment_intent_id}
        if amount is not None:
            params["amount"] = amount
        if reason is not None:
            params["reason"] = reason
        if metadata:
            params["metadata"] = dict(metadata)
        with stripe_errors():
            created = await self._v1.refunds.create_async(params, _keyed(idempotency_key))
        return refund_from_stripe(as_dict(created))

    async def retrieve(self, refund_id: str) -> RefundInfo:
        with stripe_errors():
            found = await self._v1.refunds.retrieve_async(refund_id)
        return refund_from_stripe(as_dict(found))


class SdkDisputes(_Adapter):
    async def retrieve(self, dispute_id: str) -> DisputeInfo:
        with stripe_errors():
            found = await self._v1.disputes.retrieve_async(dispute_id)
        return dispute_from_stripe(as_dict(found))

    async def list(self, *, payment_intent_id: str | None = None) -> list[DisputeInfo]:
        params: Any = {"limit": 100}
        if payment_intent_id:
            params["payment_intent"] = payment_intent_id
        with stripe_errors():
            page = await self._v1.disputes.list_async(params)
            return [dispute_from_stripe(as_dict(d)) async for d in page.auto_paging_iter()]


class SdkInvoices(_Adapter):
    async def retrieve(self, invoice_id: str) -> InvoiceInfo:
        with stripe_errors():
            found = await self._v1.invoices.retrieve_async(invoice_id)
        return invoice_from_stripe(as_dict(found))

    async def list(
        self, *, customer_id: str | None = None, subscription_id: str | None = None
    ) -> list[InvoiceInfo]:
        params: Any = {"limit": 100}
        if customer_id:
            params["customer"] = customer_id
        if subscription_id:
            params["subscription"] = subscription_id
        with stripe_errors():
            page = await self._v1.invoices.list_async(params)
            return [invoice_from_stripe(as_dict(i)) async for i in page.auto_paging_iter()]


class SdkEvents(_Adapter):
    async def list(
        self, *, created_after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[StripeEvent]:
        params: Any = {"limit": 100}
        if created_after is not None:
            params["created"] = {"gte": created_after}
        if types:
            params["types"] = list(types)
        with stripe_errors():
            page = await self._v1.events.list_async(params)
            async for event in page.auto_paging_iter():
                yield event_from_stripe(as_dict(event))


class SdkCatalog(_Adapter):
    async def retrieve_product(self, product_id: str) -> ProductInfo | None:
        import stripe

        try:
            found = await self._v1.products.retrieve_async(product_id)
        except stripe.StripeError as exc:
            if is_missing(exc):
                return None
            raise translate_stripe_error(exc) from exc
        return product_from_stripe(as_dict(found))

    async def upsert_product(
        self,
        product_id: str,
        *,
        name: str,
        description: str | None,
        active: bool,
        metadata: Mapping[str, str],
    ) -> ProductInfo:
        params: Any = {"name": name, "active": active, "metadata": dict(metadata)}
        if description:
            params["description"] = description
        existing = await self.retrieve_product(product_id)
        with stripe_errors():
            if existing is None:
                params["id"] = product_id
                created = await self._v1.products.create_async(
                    params, _keyed(f"billfold-product-{product_id}")
                )
                return product_from_stripe(as_dict(created))
            updated = await self._v1.products.update_async(product_id, params)
        return product_from_stripe(as_dict(updated))

    async def prices_by_lookup_keys(self, lookup_keys: Sequence[str]) -> list[PriceInfo]:
        found: list[PriceInfo] = []
        keys = list(lookup_keys)
        with stripe_errors():
            # Stripe accepts at most 10 lookup keys per list call.
            for start in range(0, len(keys), 10):
                page = await self._v1.prices.list_async(
                    {"lookup_keys": keys[start : start + 10], "limit": 100}
                )
                found += [price_from_stripe(as_dict(p)) async for p in page.auto_paging_iter()]
        return found

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
        params: Any = {
            "product": product_id,
            "currency": currency,
            "unit_amount": unit_amount,
            "lookup_key": lookup_key,
            "transfer_lookup_key": True,
        }
        if interval:  # None: a one-time price (credit packages)
            params["recurring"] = {"interval": interval}
        if nickname:
            params["nickname"] = nickname
        with stripe_errors():
            created = await self._v1.prices.create_async(params, _keyed(idempotency_key))
        return price_from_stripe(as_dict(created))

    async def set_price_active(self, price_id: str, active: bool) -> PriceInfo:
        with stripe_errors():
            updated = await self._v1.prices.update_async(price_id, {"active": active})
        return price_from_stripe(as_dict(updated))


def sdk_client(settings: Settings) -> stripe.StripeClient:
    """The one `stripe.StripeClient` of a billfold process, for the configured key and base."""
    import stripe

    base = settings.stripe_api_base
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses={"api": base} if base is not None else None,
        max_network_retries=2,
        # Async-only on purpose: a blocking call would stall the event loop (and deadlock
        # against the sandbox when it is served by this very process).
        http_client=stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS),
    )


class StripeClientGateway:
    """`StripeGateway` over the official SDK: one adapter per capability on one client."""

    def __init__(self, settings: Settings, *, client: stripe.StripeClient | None = None) -> None:
        lazy = _LazyClient(settings, client)
        self.customers = SdkCustomers(lazy)
        self.checkout = SdkCheckout(lazy)
        self.subscriptions = SdkSubscriptions(lazy)
        self.portal = SdkPortal(lazy)
        self.payment_methods = SdkPaymentMethods(lazy)
        self.setup_intents = SdkSetupIntents(lazy)
        self.payment_intents = SdkPaymentIntents(lazy)
        self.refunds = SdkRefunds(lazy)
        self.disputes = SdkDisputes(lazy)
        self.invoices = SdkInvoices(lazy)
        self.events = SdkEvents(lazy)
        self.catalog = SdkCatalog(lazy)
