"""Accounts with history for the panel's tests and benchmark: ledger movements and audit
entries, written through the ledger's and the audit log's own services."""

from __future__ import annotations

from billfold.audit.service import record_event
from billfold.clock import FrozenClock
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.ledger.service import debit_credits, grant_credits


async def account_with_history(
    database: Database,
    clock: FrozenClock,
    external_id: str,
    *,
    movements: int = 3,
    audit_entries: int = 2,
    kind: AccountKind = AccountKind.USER,
    email: str | None = None,
    batch: int = 200,
) -> BillingAccount:
    """An account with `movements` ledger movements (grants, every third a debit) and
    `audit_entries` entries, each naming the account's external id in its description."""
    async with database.transaction() as session:
        account = await get_or_create_account(
            session, kind, external_id, currency="usd", clock=clock
        )
        if email:
            account.email = email
    for start in range(0, movements, batch):
        async with database.transaction() as session:
            for n in range(start, min(movements, start + batch)):
                if n % 3 == 2:
                    await debit_credits(
                        session,
                        billing_account_id=account.id,
                        credits=1,
                        idempotency_key=f"test-debit:{account.id}:{n}",
                        clock=clock,
                        description=f"usage by {external_id} #{n}",
                    )
                else:
                    await grant_credits(
                        session,
                        billing_account_id=account.id,
                        credits=10,
                        idempotency_key=f"test-grant:{account.id}:{n}",
                        clock=clock,
                        description=f"grant for {external_id} #{n}",
                    )
    async with database.transaction() as session:
        for n in range(audit_entries):
            await record_event(
                session,
                action="test.happened",
                actor=f"user:{external_id}",
                account_id=account.id,
                target=f"{external_id}-target-{n}",
                at=clock.now(),
            )
    return account
