"""Payments (document 003): payment methods saved from setup intents, the postpaid balance
(dues) in the ledger, payments with an ordered fallback over the methods, autopay on the job
runner, one-off charges, refunds and disputes.

- `models`: payment methods, settings (autopay), payments and their attempts.
- `dues`: the dues in the ledger (`dues_of` and `DuesRead` for the balance route).
- `methods`: setup intents, microdeposits, priority, default, removal.
- `charging`: pay-balance and charge-once (reserve, call, record per attempt).
- `handlers`: Stripe's events; `jobs`: autopay; `schemas`: the API's shapes.
"""
