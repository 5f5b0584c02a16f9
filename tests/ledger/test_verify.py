"""`billfold ledger verify` finds rows altered behind the ledger's back."""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy import text

from billfold.clock import FrozenClock
from billfold.db.engine import Database
from billfold.ledger import customer_account, debit_credits, grant_credits
from billfold.ledger.verify import verify_ledger
from tests.ledger.conftest import new_customer


async def _some_postings(database: Database, clock: FrozenClock) -> tuple[int, int]:
    """Two customers with a few movements; returns alice's account id and her usage debit's id."""
    alice = await new_customer(database, "alice")
    bob = await new_customer(database, "bob")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=100, idempotency_key="ga", clock=clock
        )
        await grant_credits(
            session, billing_account_id=bob, credits=40, idempotency_key="gb", clock=clock
        )
        used = await debit_credits(
            session, billing_account_id=alice, credits=30, idempotency_key="ua", clock=clock
        )
        account = await customer_account(session, alice, clock=clock)
    return account.id, used.id


async def _problems(database: Database) -> set[str]:
    async with database.transaction() as session:
        return {p.kind for p in await verify_ledger(session)}


async def _run_cli(database: Database) -> tuple[int, str]:
    env = dict(os.environ, BILLFOLD_DATABASE_URL=database.url)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billfold.cli",
        "ledger",
        "verify",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_sound_ledger_verifies(database: Database, clock: FrozenClock) -> None:
    await _some_postings(database, clock)
    assert await _problems(database) == set()
    code, output = await _run_cli(database)
    assert code == 0, output
    assert "ledger verified" in output


async def test_a_balance_changed_behind_its_back_is_reported(
    database: Database, clock: FrozenClock
) -> None:
    account_id, _ = await _some_postings(database, clock)
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE ledger_accounts SET balance = balance + 5 WHERE id = :id"),
            {"id": account_id},
        )
    async with database.transaction() as session:
        problems = await verify_ledger(session)
    mismatch = next(p for p in problems if p.kind == "balance_mismatch")
    assert (mismatch.account_id, mismatch.expected, mismatch.actual) == (account_id, 70, 75)
    assert {p.kind for p in problems} == {"balance_mismatch", "running_balance_mismatch"}
    code, output = await _run_cli(database)
    assert code == 1
    assert f"account {account_id}" in output and "holds 75 but its entries sum to 70" in output


async def test_an_entry_changed_behind_its_back_is_reported(
    database: Database, clock: FrozenClock
) -> None:
    _, usage_debit = await _some_postings(database, clock)
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE ledger_entries SET amount = amount - 1 "
                "WHERE transaction_id = :t AND amount < 0"
            ),
            {"t": usage_debit},
        )
    assert await _problems(database) == {
        "balance_mismatch",
        "unbalanced_transaction",
        "fingerprint_mismatch",
    }
    code, output = await _run_cli(database)
    assert code == 1
    assert f"transaction {usage_debit}" in output


async def test_a_consistent_forgery_is_still_caught_by_the_fingerprint(
    database: Database, clock: FrozenClock
) -> None:
    """Both entries and both balances moved together: sums agree, the fingerprint does not."""
    _, usage_debit = await _some_postings(database, clock)
    async with database.transaction() as session:
        await session.execute(
            text(
                # Right-hand sides see the old amount: the running balance moves by it once more.
                "UPDATE ledger_entries SET amount = amount * 2, balance_after = balance_after "
                "+ amount WHERE transaction_id = :t"
            ),
            {"t": usage_debit},
        )
        await session.execute(
            text(
                "UPDATE ledger_accounts SET balance = balance + d.amount / 2 FROM "
                "(SELECT account_id, amount FROM ledger_entries WHERE transaction_id = :t) AS d "
                "WHERE ledger_accounts.id = d.account_id"
            ),
            {"t": usage_debit},
        )
    assert await _problems(database) == {"fingerprint_mismatch"}


async def test_an_orphan_or_unit_confused_entry_is_reported(
    database: Database, clock: FrozenClock
) -> None:
    await _some_postings(database, clock)
    async with database.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO ledger_transactions "
                "(idempotency_key, kind, metadata, fingerprint, created_at) "
                "VALUES ('forged', 'forged', '{}', 'x', '2026-01-01 00:00:00')"
            )
        )
        await session.execute(text("UPDATE ledger_entries SET unit = 'usd' WHERE id = 1"))
    assert {"empty_transaction", "unit_mismatch", "fingerprint_mismatch"} <= await _problems(
        database
    )
