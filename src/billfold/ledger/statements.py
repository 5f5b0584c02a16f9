"""The SQL a posting sends to PostgreSQL, written once.

`bench/ledger.py` sends this same statement through `pgbench` to measure what the database alone
can do, so keep any change to the posting path here.

A posting on PostgreSQL is one statement inside the caller's transaction, in one round trip:

- `claimed` inserts the transaction row unless its idempotency key exists (ON CONFLICT DO
  NOTHING). A concurrent posting with the same key waits on this row's unique-index entry until
  the first commits (then claims nothing) or rolls back (then claims the key itself).
- `locked` locks the posting's accounts in id order, so two postings over the same accounts
  never deadlock; nothing is locked when the key was not claimed.
- `moved` applies each account's net change only where the guard allows it, evaluated by the
  database on the locked, current row: a deposit, a balance that stays at or above zero, an
  account that may go negative, or an explicit overdraft.
- `written` inserts the entries, with each account's running balance, for the accounts that moved.

The result has no rows when the key had been used before; otherwise one row per entry written
(or a single row with NULL entry columns), each carrying the new transaction's id. An account the
guard refused has no entries in the result: the caller undoes the rest and raises.
"""

from __future__ import annotations

import re

POST_TRANSACTION = """\
WITH claimed AS (
    INSERT INTO ledger_transactions
        (idempotency_key, kind, description, metadata, fingerprint, created_at)
    VALUES (:idempotency_key, :kind, :description, CAST(:metadata AS JSONB), :fingerprint,
            :created_at)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), lines AS (
    SELECT l.account_id, l.unit, l.amount, l.ord
    FROM unnest(CAST(:account_ids AS BIGINT[]), CAST(:units AS TEXT[]), CAST(:amounts AS BIGINT[]))
        WITH ORDINALITY AS l (account_id, unit, amount, ord)
), deltas AS (
    SELECT account_id, min(unit) AS unit, CAST(sum(amount) AS BIGINT) AS delta
    FROM lines GROUP BY account_id
), locked AS MATERIALIZED (
    SELECT a.id FROM ledger_accounts a
    WHERE a.id IN (SELECT account_id FROM deltas) AND EXISTS (SELECT 1 FROM claimed)
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
), written AS (
    INSERT INTO ledger_entries (transaction_id, account_id, unit, amount, balance_after)
    SELECT c.id, l.account_id, l.unit, l.amount,
           m.balance - m.delta + sum(l.amount) OVER (PARTITION BY l.account_id ORDER BY l.ord)
    FROM lines l JOIN moved m ON m.id = l.account_id CROSS JOIN claimed c
    ORDER BY l.ord
    RETURNING id, account_id, unit, amount, balance_after
)
SELECT c.id AS transaction_id, w.id, w.account_id, w.unit, w.amount, w.balance_after
FROM claimed c LEFT JOIN written w ON true"""


def numbered(statement: str) -> tuple[str, tuple[str, ...]]:
    """The statement with `$1, $2, ...` for its `:name` parameters (asyncpg's own form), and the
    names in the order of their numbers."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<![:\w]):(\w+)", number, statement), tuple(names)


POST_TRANSACTION_NUMBERED, POST_TRANSACTION_PARAMETERS = numbered(POST_TRANSACTION)
