"""The webhook and the customer's request may both save the same payment method first (the
panel finishing a setup Stripe.js confirmed, while Stripe's `payment_method.attached` arrives):
the second waits for the first's row and updates it, instead of failing on its primary key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text

from billfold.clock import FrozenClock
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.payments.methods import list_methods, mirror_method
from billfold.payments.models import ACTIVE, PENDING_VERIFICATION
from billfold.stripe.gateway import PaymentMethodInfo

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BANK = PaymentMethodInfo(
    id="pm_race_bank", type="us_bank_account", customer_id="cus_race", last4="6789"
)


async def _waits_on_a_lock(database: Database) -> bool:
    async with database.read() as session:
        waiting = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting.scalar_one())


async def test_two_first_writers_of_a_method_make_one_row(database: Database) -> None:
    clock = FrozenClock(NOW)
    async with database.transaction() as session:
        account = await get_or_create_account(
            session, AccountKind.USER, "racer", currency="usd", clock=clock
        )
    async with database.transaction() as webhook:
        # The webhook writes the row first (as an attached, usable method), not yet committed...
        await mirror_method(webhook, account.id, BANK, status=ACTIVE, now=NOW)

        async def request() -> None:
            async with database.transaction() as own:
                await mirror_method(own, account.id, BANK, status=PENDING_VERIFICATION, now=NOW)

        # ...while the request writes it too: it waits for the webhook's transaction (on
        # PostgreSQL, on the row's key; on SQLite, for the write lock, so there is no race).
        writing = asyncio.ensure_future(request())
        if database.url.startswith("postgresql"):
            # Another process's state (PostgreSQL's lock table): polled, no Event can say it.
            while not await _waits_on_a_lock(database):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    await writing
    async with database.read() as session:
        [method] = await list_methods(session, account.id)
    assert (method.id, method.status, method.priority) == (BANK.id, PENDING_VERIFICATION, 1)
