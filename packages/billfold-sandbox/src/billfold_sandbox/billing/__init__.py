"""Stripe Billing in the sandbox: subscriptions, invoices, prorations, renewals and dunning.

The resource modules (`resources/subscriptions.py`, `invoices.py`, `checkout.py`,
`billing_portal.py`) serve the HTTP routes; the rules live here so Checkout, the portal and the
API share one implementation.
"""
