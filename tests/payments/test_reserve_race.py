"""A reservation that loses the race for the dues leaves nothing behind.

On PostgreSQL (READ COMMITTED) another run may reserve the same dues between the read of the
amount owed and the read of their marker; the marker is then the new one, so the payment's id is
new and its insert succeeds while the dues are already gone. The reservation must answer Conflict
with no payment row written: its caller (autopay) commits after a Conflict, and a payment row
without its dues would stay reserved forever, or charge what is not owed if run.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from billfold.clock import FrozenClock
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.errors import Conflict
from billfold.payments import charging, dues
from billfold.payments.models import Payment

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_a_reservation_that_loses_the_race_writes_no_payment(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FrozenClock(NOW)
    async with database.transaction() as session:
        account = await get_or_create_account(
            session, AccountKind.USER, "racer", currency="usd", clock=clock
        )
        await dues.add_charge(
            session,
            account.id,
            amount=900,
            currency="usd",
            charge_id="c1",
            description=None,
            clock=clock,
        )
    async with database.transaction() as session:  # the winner
        first = await charging.reserve_dues_payment(
            session, account.id, "usd", kind="autopay", now=NOW, clock=clock
        )
    assert first is not None

    # The loser read the amount owed before the winner committed, its marker after.
    stale = dues.CurrencyDues(currency="usd", settled=900, pending=0)

    async def read_before_the_winner(*_args: object) -> dues.CurrencyDues:
        return stale

    monkeypatch.setattr(dues, "currency_dues", read_before_the_winner)
    async with database.transaction() as session:
        with pytest.raises(Conflict):
            await charging.reserve_dues_payment(
                session, account.id, "usd", kind="autopay", now=NOW, clock=clock
            )
        # Its caller goes on and commits, as autopay does after a Conflict.
    async with database.read() as session:
        count = (await session.execute(select(func.count()).select_from(Payment))).scalar_one()
    assert count == 1
