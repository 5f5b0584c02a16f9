"""Every parameter the SDK's typed params allow is accepted on the routes of subscription
items and schedules, invoice lines and sending, and credit notes."""

from __future__ import annotations

import stripe.params as sdk

from tests.sandbox.sdk_params import undeclared_sdk_parameters

ROUTES = {
    ("POST", "/v1/subscription_items"): sdk.SubscriptionItemCreateParams,
    ("POST", "/v1/subscription_items/{id}"): sdk.SubscriptionItemUpdateParams,
    ("DELETE", "/v1/subscription_items/{id}"): sdk.SubscriptionItemDeleteParams,
    ("POST", "/v1/subscription_schedules"): sdk.SubscriptionScheduleCreateParams,
    ("POST", "/v1/subscription_schedules/{id}"): sdk.SubscriptionScheduleUpdateParams,
    ("GET", "/v1/subscription_schedules"): sdk.SubscriptionScheduleListParams,
    ("POST", "/v1/subscription_schedules/{id}/cancel"): sdk.SubscriptionScheduleCancelParams,
    ("POST", "/v1/subscription_schedules/{id}/release"): sdk.SubscriptionScheduleReleaseParams,
    ("POST", "/v1/invoices/{id}/add_lines"): sdk.InvoiceAddLinesParams,
    ("POST", "/v1/invoices/{id}/update_lines"): sdk.InvoiceUpdateLinesParams,
    ("POST", "/v1/invoices/{id}/remove_lines"): sdk.InvoiceRemoveLinesParams,
    ("POST", "/v1/invoices/{id}/lines/{line}"): sdk.InvoiceLineItemUpdateParams,
    ("POST", "/v1/invoices/{id}/send"): sdk.InvoiceSendInvoiceParams,
    ("POST", "/v1/credit_notes"): sdk.CreditNoteCreateParams,
    ("GET", "/v1/credit_notes/preview"): sdk.CreditNotePreviewParams,
    ("GET", "/v1/credit_notes/preview/lines"): sdk.CreditNotePreviewLinesParams,
    ("POST", "/v1/credit_notes/{id}"): sdk.CreditNoteUpdateParams,
    ("GET", "/v1/credit_notes"): sdk.CreditNoteListParams,
    ("GET", "/v1/credit_notes/{id}/lines"): sdk.CreditNoteListLinesParams,
    ("POST", "/v1/credit_notes/{id}/void"): sdk.CreditNoteVoidCreditNoteParams,
}


def test_sdk_parameters_are_declared() -> None:
    problems = {
        f"{method} {path}": missing
        for (method, path), typed in ROUTES.items()
        if (missing := undeclared_sdk_parameters(method, path, typed))
    }
    assert not problems, problems
