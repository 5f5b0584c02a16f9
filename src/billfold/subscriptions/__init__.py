"""Subscriptions: checkout, status (`has_premium`), cancel, reactivate, plan change, portal,
and billfold's copy of every Stripe subscription. One module per kind of work (README.md here
lists their functions): `reads` (status, the current subscription), `checkout` (Checkout and
the portal), `changes` (cancel, reactivate, change_plan), `sync` (writing Stripe's state),
`reconcile`; `handlers` applies Stripe's events."""
