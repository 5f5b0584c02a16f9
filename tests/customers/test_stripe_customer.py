"""The Stripe customer: created lazily, once, recorded in typed columns; on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import func, select

from billfold.audit.models import AuditEntry
from billfold.container import Container
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import (
    ensure_stripe_customer,
    get_or_create_account,
    unlink_stripe_customer,
)
from billfold.stripe.gateway import CustomerInfo
from tests.fakes.stripe_gateway import FakeCustomers, FakeStripeGateway


class RecordingCustomers(FakeCustomers):
    """The fake's customers, with a round trip on creation, remembering what they were sent."""

    def __init__(self, gateway: FakeStripeGateway) -> None:
        super().__init__(gateway)
        self.sent: list[tuple[str, dict[str, str]]] = []

    async def create(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> CustomerInfo:
        self.sent.append((idempotency_key, dict(metadata)))
        await asyncio.sleep(0.02)
        return await super().create(
            email=email, name=name, metadata=metadata, idempotency_key=idempotency_key
        )


class RecordingStripe(FakeStripeGateway):
    """The fake with a recording customers capability."""

    def __init__(self) -> None:
        super().__init__()
        self.customers = self.recording = RecordingCustomers(self)

    @property
    def sent(self) -> list[tuple[str, dict[str, str]]]:
        return self.recording.sent


@pytest.fixture
def gateway() -> FakeStripeGateway:
    return RecordingStripe()


async def _account(container: Container, user: str = "ada") -> BillingAccount:
    async with container.db.transaction() as session:
        return await get_or_create_account(
            session, AccountKind.USER, user, currency="eur", clock=container.clock
        )


async def _ensure(container: Container, account: BillingAccount, audit: Any) -> str:
    assert container.stripe_gateway is not None
    return await ensure_stripe_customer(
        container.db, container.stripe_gateway, account.id, clock=container.clock, audit=audit
    )


async def test_created_once_with_a_key_from_the_account_id(
    container: Container, gateway: RecordingStripe, audit: Any
) -> None:
    account = await _account(container)
    first = await _ensure(container, account, audit)
    again = await _ensure(container, account, audit)
    assert first == again and list(gateway.stripe.customers) == [first]
    assert gateway.sent == [(f"customer:{account.id}", gateway.sent[0][1])]
    assert gateway.sent[0][1]["billfold_account_id"] == account.id
    async with container.db.transaction() as session:
        row = await session.get(BillingAccount, account.id)
        assert row is not None
        assert row.stripe_customer_id == first
        assert row.stripe_customer_created_at == container.clock.now()
        assert row.settings == {}


async def test_concurrent_first_calls_end_with_one_customer(
    container: Container, gateway: RecordingStripe, audit: Any
) -> None:
    account = await _account(container)
    ids = await asyncio.gather(*(_ensure(container, account, audit) for _ in range(4)))
    assert len(set(ids)) == 1 and len(gateway.stripe.customers) == 1
    # Every call sent the same key; only the first record wrote (and audited) it.
    assert {key for key, _ in gateway.sent} == {f"customer:{account.id}"}
    async with container.db.transaction() as session:
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "customer.created", AuditEntry.account_id == account.id)
        )
    assert audited == 1


async def test_a_deleted_customer_is_replaced_under_a_new_key(
    container: Container, gateway: RecordingStripe, audit: Any
) -> None:
    account = await _account(container)
    first = await _ensure(container, account, audit)
    async with container.db.transaction() as session:
        await unlink_stripe_customer(session, first, now=container.clock.now())
    second = await _ensure(container, account, audit)
    assert second != first
    assert [key for key, _ in gateway.sent] == [
        f"customer:{account.id}",
        f"customer:{account.id}:g1",
    ]
    async with container.db.transaction() as session:
        row = await session.get(BillingAccount, account.id)
        assert row is not None
        assert (row.stripe_customer_id, row.stripe_customer_generation) == (second, 1)
