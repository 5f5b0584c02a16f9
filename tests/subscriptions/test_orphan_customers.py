"""`billfold stripe reconcile` finds Stripe customers that name an account not linked to them
(a crash between creating a customer and recording it) and `--fix` repairs them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.container import Container
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import ensure_stripe_customer, get_or_create_account
from billfold.subscriptions.reconcile import NO_ACCOUNT, TAKEN, UNLINKED, orphan_customers
from tests.fakes.stripe_gateway import FakeStripeGateway


async def _account(container: Container, user: str) -> str:
    async with container.db.transaction() as session:
        account = await get_or_create_account(
            session, AccountKind.USER, user, currency="usd", clock=container.clock
        )
        return account.id


async def _stray_customer(gateway: FakeStripeGateway, account_id: str, key: str) -> str:
    created = await gateway.customers.create(
        email=None, name=None, metadata={"billfold_account_id": account_id}, idempotency_key=key
    )
    return created.id


async def test_orphans_are_reported_then_linked_or_deleted(
    container: Container, gateway: FakeStripeGateway, audit: Any
) -> None:
    linked = await _account(container, "alice")
    kept = await ensure_stripe_customer(
        container.db, gateway, linked, clock=container.clock, audit=audit
    )
    second = await _stray_customer(gateway, linked, "crashed-attempt")
    gone = await _stray_customer(gateway, "acct_rolled_back", "rolled-back")
    unlinked = await _account(container, "bob")
    own = await _stray_customer(gateway, unlinked, "never-recorded")
    await gateway.customers.create(
        email=None, name=None, metadata={}, idempotency_key="not-billfolds"
    )

    found = await orphan_customers(container)
    assert {(o.customer_id, o.reason, o.repair) for o in found} == {
        (second, TAKEN, None),
        (gone, NO_ACCOUNT, None),
        (own, UNLINKED, None),
    }
    assert next(o for o in found if o.customer_id == second).linked_customer_id == kept

    repaired = await orphan_customers(container, fix=True, audit=audit)
    assert {(o.customer_id, o.repair) for o in repaired} == {
        (second, "deleted"),
        (gone, "deleted"),
        (own, "linked"),
    }
    assert await orphan_customers(container) == []
    assert (await gateway.customers.retrieve(second)).deleted is True
    assert (await gateway.customers.retrieve(kept)).deleted is False
    async with container.db.transaction() as session:
        bob = await session.get(BillingAccount, unlinked)
        assert bob is not None and bob.stripe_customer_id == own
        actions = (await session.execute(select(AuditEntry.action, AuditEntry.target))).all()
    assert ("customer.linked", own) in actions
    assert {t for a, t in actions if a == "customer.orphan_deleted"} == {second, gone}
