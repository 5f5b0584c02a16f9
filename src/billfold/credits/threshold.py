"""The auto top-up's trigger, inside every movement of an account's credits (under its wallet
lock): a debit, a hold, a capture, an expiry, a revoke or a clawback (a refund, a lost
dispute) that brings the balance under the account's threshold enqueues one
`credits.auto_topup` job (the outbox: it runs only if the movement commits), and disarms it; a
balance back at or above the threshold (a grant) re-arms it. So a top-up fires once per
crossing, however many debits follow under the threshold.

Kept apart from `autotopup.py` (the settings, the guardrails and the charge) so the engine
(`service.py`) imports only this: one primary-key read per movement when nothing fires.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock
from billfold.credits.models import AutoTopupStatus, CreditAutoTopup
from billfold.jobs import enqueue

AUTO_TOPUP_JOB = "credits.auto_topup"
# Written on the job (the runner reads a job's own max_attempts, not its kind's): after this
# many failed attempts it is dead and its reserved top-up released (autotopup.release_stranded).
AUTO_TOPUP_MAX_ATTEMPTS = 5

settings_table = cast(Table, CreditAutoTopup.__table__)


# What the trigger reads of an account's settings (a movement may read them in a statement of
# its own, under the wallet lock, and pass the row to note_balance: `trigger=`).
TRIGGER_COLUMNS = (
    settings_table.c.status,
    settings_table.c.threshold,
    settings_table.c.armed,
    settings_table.c.crossings,
)
_UNREAD: Any = object()


async def note_balance(
    session: AsyncSession, account_id: str, balance: int, clock: Clock, *, trigger: Any = _UNREAD
) -> bool:
    """After a movement of the account's credits (its wallet locked): fire the auto top-up
    when the balance fell under the threshold while armed. True when a job was enqueued.
    `trigger`: TRIGGER_COLUMNS of the account's settings as already read under the wallet
    lock in this transaction (None, or NULL columns, when it has none)."""
    row = trigger
    if row is _UNREAD:
        row = (
            await session.execute(
                select(*TRIGGER_COLUMNS).where(settings_table.c.account_id == account_id)
            )
        ).first()
    if row is None or row.status != AutoTopupStatus.ACTIVE:
        return False
    if balance >= row.threshold:
        if not row.armed:
            await session.execute(
                update(settings_table)
                .where(settings_table.c.account_id == account_id)
                .values(armed=True)
            )
        return False
    if not row.armed:
        return False
    crossing = int(row.crossings) + 1
    await session.execute(
        update(settings_table)
        .where(settings_table.c.account_id == account_id)
        .values(armed=False, crossings=crossing, updated_at=clock.now())
    )
    return await enqueue(
        session,
        AUTO_TOPUP_JOB,
        {"account_id": account_id, "crossing": crossing},
        key=f"auto-topup:{account_id}:{crossing}",
        max_attempts=AUTO_TOPUP_MAX_ATTEMPTS,
        clock=clock,
    )
