"""The Stripe gateway: what billfold asks of Stripe, in billfold's own types.

- `protocols`: one small Protocol per capability and `StripeGateway`, the composite that domain
  code receives (`gateway.checkout.create_session(...)`, `gateway.refunds.create(...)`).
- `types`: billfold's frozen dataclasses and the parsers of Stripe's JSON.
- `errors`: the one translation of SDK errors into `billfold.errors` (`stripe_errors()`).
- `adapter`: `StripeClientGateway`, the SDK adapters sharing one `stripe.StripeClient`.

The gateway knows no domain: domains call it, never the reverse.
"""

from billfold.stripe.gateway.adapter import STRIPE_TIMEOUT_SECONDS, StripeClientGateway, as_dict
from billfold.stripe.gateway.errors import stripe_errors, translate_stripe_error
from billfold.stripe.gateway.protocols import (
    CatalogGateway,
    CheckoutGateway,
    CustomersGateway,
    DisputesGateway,
    EventsGateway,
    InvoicesGateway,
    PaymentIntentsGateway,
    PaymentMethodsGateway,
    PortalGateway,
    RefundsGateway,
    SetupIntentsGateway,
    SetupMethod,
    StripeGateway,
    SubscriptionsGateway,
    gateway_of,
)
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
    from_epoch,
    invoice_subscription_id,
    subscription_from_stripe,
)

__all__ = [
    "STRIPE_TIMEOUT_SECONDS",
    "BankAccount",
    "CatalogGateway",
    "CheckoutGateway",
    "CheckoutMode",
    "CheckoutSessionInfo",
    "CustomerInfo",
    "CustomersGateway",
    "DisputeInfo",
    "DisputesGateway",
    "EventsGateway",
    "InvoiceInfo",
    "InvoicesGateway",
    "LineItem",
    "PaymentIntentInfo",
    "PaymentIntentsGateway",
    "PaymentMethodInfo",
    "PaymentMethodsGateway",
    "PortalGateway",
    "PriceInfo",
    "ProductInfo",
    "ProrationBehavior",
    "RefundInfo",
    "RefundsGateway",
    "SetupIntentInfo",
    "SetupIntentsGateway",
    "SetupMethod",
    "StripeClientGateway",
    "StripeEvent",
    "StripeGateway",
    "SubscriptionSnapshot",
    "SubscriptionsGateway",
    "as_dict",
    "checkout_session_from_stripe",
    "from_epoch",
    "gateway_of",
    "invoice_subscription_id",
    "stripe_errors",
    "subscription_from_stripe",
    "translate_stripe_error",
]
