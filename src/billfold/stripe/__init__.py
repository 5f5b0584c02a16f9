"""Stripe behind billfold's own interface: the gateway, and the webhook inbox. It knows no
domain: domains call it, never the reverse.

- `gateway.StripeGateway` (the composite of one Protocol per capability the domains depend on)
  and `gateway.StripeClientGateway` (the official SDK's async methods); both speak billfold's
  dataclasses, never SDK objects.
- `inbox.receive_webhook` (one statement) / `inbox.apply_due` (after the answer): what every
  webhook route calls; `inbox.WebhookHandlers` on which a domain declares its event types;
  `inbox.jobs` (`stripe.apply_event`, a batch job kind); `inbox.process_due` / `sync_events`.
"""
