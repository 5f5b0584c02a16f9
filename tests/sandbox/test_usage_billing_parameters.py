"""Every parameter the SDK's typed params allow on the usage-billing, credits, entitlements,
cash balance and tax ID routes is accepted (the sandbox refuses only what Stripe would)."""

from __future__ import annotations

import stripe.params as sdk
import stripe.params.billing as billing
import stripe.params.entitlements as entitlements
import stripe.params.test_helpers as helpers

from tests.sandbox.sdk_params import undeclared_sdk_parameters

ROUTES = {
    ("POST", "/v1/billing/meters"): billing.MeterCreateParams,
    ("POST", "/v1/billing/meters/{id}"): billing.MeterUpdateParams,
    ("GET", "/v1/billing/meters"): billing.MeterListParams,
    ("POST", "/v1/billing/meters/{id}/deactivate"): billing.MeterDeactivateParams,
    ("POST", "/v1/billing/meters/{id}/reactivate"): billing.MeterReactivateParams,
    ("GET", "/v1/billing/meters/{id}/event_summaries"): billing.MeterListEventSummariesParams,
    ("POST", "/v1/billing/meter_events"): billing.MeterEventCreateParams,
    ("POST", "/v1/billing/meter_event_adjustments"): billing.MeterEventAdjustmentCreateParams,
    ("POST", "/v1/billing/credit_grants"): billing.CreditGrantCreateParams,
    ("POST", "/v1/billing/credit_grants/{id}"): billing.CreditGrantUpdateParams,
    ("GET", "/v1/billing/credit_grants"): billing.CreditGrantListParams,
    ("POST", "/v1/billing/credit_grants/{id}/expire"): billing.CreditGrantExpireParams,
    ("POST", "/v1/billing/credit_grants/{id}/void"): billing.CreditGrantVoidGrantParams,
    ("GET", "/v1/billing/credit_balance_summary"): billing.CreditBalanceSummaryRetrieveParams,
    ("GET", "/v1/billing/credit_balance_transactions"): billing.CreditBalanceTransactionListParams,
    ("POST", "/v1/entitlements/features"): entitlements.FeatureCreateParams,
    ("POST", "/v1/entitlements/features/{id}"): entitlements.FeatureUpdateParams,
    ("GET", "/v1/entitlements/features"): entitlements.FeatureListParams,
    ("GET", "/v1/entitlements/active_entitlements"): entitlements.ActiveEntitlementListParams,
    ("POST", "/v1/products/{product}/features"): sdk.ProductFeatureCreateParams,
    ("GET", "/v1/products/{product}/features"): sdk.ProductFeatureListParams,
    ("POST", "/v1/customers/{customer}/cash_balance"): sdk.CustomerCashBalanceUpdateParams,
    (
        "GET",
        "/v1/customers/{customer}/cash_balance_transactions",
    ): sdk.CustomerCashBalanceTransactionListParams,
    (
        "POST",
        "/v1/customers/{customer}/funding_instructions",
    ): sdk.CustomerCreateFundingInstructionsParams,
    (
        "POST",
        "/v1/test_helpers/customers/{customer}/fund_cash_balance",
    ): helpers.CustomerFundCashBalanceParams,
    ("POST", "/v1/customers/{customer}/tax_ids"): sdk.CustomerTaxIdCreateParams,
    ("GET", "/v1/customers/{customer}/tax_ids"): sdk.CustomerTaxIdListParams,
    ("POST", "/v1/subscriptions/{id}/pause"): sdk.SubscriptionPauseParams,
    ("POST", "/v1/subscriptions/{id}/migrate"): sdk.SubscriptionMigrateParams,
    ("POST", "/v1/invoices/{id}/attach_payment"): sdk.InvoiceAttachPaymentParams,
}


def test_sdk_parameters_are_declared_on_usage_billing_routes() -> None:
    problems = {
        f"{method} {path}": missing
        for (method, path), typed in ROUTES.items()
        if (missing := undeclared_sdk_parameters(method, path, typed))
    }
    assert not problems, problems
