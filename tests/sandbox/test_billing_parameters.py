"""Every parameter the SDK's typed params allow on the billing routes is accepted (the
sandbox refuses only what Stripe would refuse)."""

from __future__ import annotations

import stripe.params as sdk
import stripe.params.billing_portal as portal
import stripe.params.checkout as checkout

from tests.sandbox.sdk_params import undeclared_sdk_parameters

ROUTES = {
    ("POST", "/v1/subscriptions"): sdk.SubscriptionCreateParams,
    ("POST", "/v1/subscriptions/{id}"): sdk.SubscriptionUpdateParams,
    ("GET", "/v1/subscriptions"): sdk.SubscriptionListParams,
    ("DELETE", "/v1/subscriptions/{id}"): sdk.SubscriptionCancelParams,
    ("POST", "/v1/subscriptions/{id}/resume"): sdk.SubscriptionResumeParams,
    ("GET", "/v1/subscriptions/search"): sdk.SubscriptionSearchParams,
    ("GET", "/v1/subscription_items"): sdk.SubscriptionItemListParams,
    ("GET", "/v1/invoiceitems"): sdk.InvoiceItemListParams,
    ("GET", "/v1/invoices"): sdk.InvoiceListParams,
    ("POST", "/v1/invoices"): sdk.InvoiceCreateParams,
    ("POST", "/v1/invoices/create_preview"): sdk.InvoiceCreatePreviewParams,
    ("POST", "/v1/invoiceitems"): sdk.InvoiceItemCreateParams,
    ("POST", "/v1/invoices/{id}"): sdk.InvoiceUpdateParams,
    ("POST", "/v1/invoices/{id}/pay"): sdk.InvoicePayParams,
    ("POST", "/v1/invoices/{id}/finalize"): sdk.InvoiceFinalizeInvoiceParams,
    ("GET", "/v1/invoice_payments"): sdk.InvoicePaymentListParams,
    ("POST", "/v1/checkout/sessions"): checkout.SessionCreateParams,
    ("GET", "/v1/checkout/sessions"): checkout.SessionListParams,
    ("POST", "/v1/checkout/sessions/{id}"): checkout.SessionModifyParams,
    ("POST", "/v1/billing_portal/sessions"): portal.SessionCreateParams,
    ("POST", "/v1/billing_portal/configurations"): portal.ConfigurationCreateParams,
    ("POST", "/v1/billing_portal/configurations/{id}"): portal.ConfigurationModifyParams,
    ("GET", "/v1/billing_portal/configurations"): portal.ConfigurationListParams,
}


def test_sdk_parameters_are_declared_on_billing_routes() -> None:
    problems = {
        f"{method} {path}": missing
        for (method, path), typed in ROUTES.items()
        if (missing := undeclared_sdk_parameters(method, path, typed))
    }
    assert not problems, problems
