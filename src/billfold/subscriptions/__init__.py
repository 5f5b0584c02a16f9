"""Subscriptions: checkout, status (`has_premium`), cancel, reactivate, plan change, portal,
and billfold's copy of every Stripe subscription. The functions every dialect calls are in
`service` (see README.md here); `handlers` applies Stripe's events."""
