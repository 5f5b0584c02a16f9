"""The SQL a posting sends to PostgreSQL, written once.

`bench/ledger.py` sends these same statements through `pgbench` to measure what the database alone
can do, so keep any change to the posting path here.

A posting on PostgreSQL is two statements inside the caller's transaction:

1. INSERT_TRANSACTION claims the idempotency key (a concurrent posting with the same key waits on
   this row's unique-index entry until the first commits or rolls back).
2. MOVE_BALANCES, in one round trip: locks the accounts in id order (`locked`, so two postings over
   the same accounts never deadlock), applies each account's net change where the guard allows it
   (`moved`: the check runs on the locked, current row), and writes the entries with their running
   balances (`written`) for the accounts that moved. An account the guard refused has no entries
   in the result; the caller then undoes the rest (UNDO_BALANCES, DELETE_*) and raises.
"""

from __future__ import annotations

INSERT_TRANSACTION = """\
INSERT INTO ledger_transactions
    (idempotency_key, kind, description, metadata, fingerprint, created_at)
VALUES (:idempotency_key, :kind, :description, CAST(:metadata AS JSONB), :fingerprint, :created_at)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id"""

MOVE_BALANCES = """\
WITH lines AS (
    SELECT l.account_id, l.unit, l.amount, l.ord
    FROM unnest(CAST(:account_ids AS BIGINT[]), CAST(:units AS TEXT[]), CAST(:amounts AS BIGINT[]))
        WITH ORDINALITY AS l (account_id, unit, amount, ord)
), deltas AS (
    SELECT account_id, min(unit) AS unit, sum(amount)::BIGINT AS delta
    FROM lines GROUP BY account_id
), locked AS MATERIALIZED (
    SELECT a.id FROM ledger_accounts a
    WHERE a.id IN (SELECT account_id FROM deltas)
    ORDER BY a.id
    FOR NO KEY UPDATE
), moved AS (
    UPDATE ledger_accounts a
    SET balance = a.balance + d.delta,
        overdrawn = (a.balance + d.delta < 0) AND (a.overdrawn OR CAST(:overdraft AS BOOLEAN))
    FROM locked JOIN deltas d ON d.account_id = locked.id
    WHERE a.id = locked.id
      AND a.unit = d.unit
      AND (d.delta >= 0 OR a.balance + d.delta >= 0 OR a.allow_negative
           OR CAST(:overdraft AS BOOLEAN))
    RETURNING a.id, a.balance, d.delta
)
INSERT INTO ledger_entries (transaction_id, account_id, unit, amount, balance_after)
SELECT CAST(:transaction_id AS BIGINT), l.account_id, l.unit, l.amount,
       m.balance - m.delta + sum(l.amount) OVER (PARTITION BY l.account_id ORDER BY l.ord)
FROM lines l JOIN moved m ON m.id = l.account_id
ORDER BY l.ord
RETURNING id, account_id, unit, amount, balance_after"""
