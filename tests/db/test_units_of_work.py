"""Units of work that say whether they write: reads never wait behind a writer and never write,
and a connection the server dropped is replaced without the caller seeing an error."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.config import Settings
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import find_account, get_or_create_account
from billfold.db.engine import Database
from billfold.db.hot_read import PreparedRead
from tests.subscriptions.fixtures import bearer


async def _accounts(session: AsyncSession) -> int:
    count = select(func.count()).select_from(BillingAccount)
    return int((await session.execute(count)).scalar_one())


async def test_reads_proceed_while_a_write_transaction_is_open(database: Database) -> None:
    async with database.transaction() as writer:
        await get_or_create_account(writer, AccountKind.USER, "w1", currency="usd")
        # The writer holds SQLite's write lock now; readers see the last committed state.
        results = await asyncio.gather(*(_read_count(database) for _ in range(4)))
        assert results == [0, 0, 0, 0]
    assert await _read_count(database) == 1


async def _read_count(database: Database) -> int:
    async with database.read() as reader:
        return await _accounts(reader)


async def test_a_read_unit_of_work_that_writes_fails(database: Database) -> None:
    with pytest.raises(DBAPIError):
        async with database.read() as reader:
            await reader.execute(
                text("UPDATE billing_accounts SET name = 'x' WHERE external_id = 'nobody'")
            )


async def test_a_read_creates_a_missing_account_in_a_writer_of_its_own(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    response = await client.get(
        "/api/v1/payments/subscription/status", headers=bearer(settings, "newcomer")
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["has_premium"] is False
    async with database.read() as reader:
        assert await find_account(reader, AccountKind.USER, "newcomer") is not None


async def test_the_balance_read_creates_a_missing_account_in_a_writer_of_its_own(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    response = await client.get("/api/billing/balance", headers=bearer(settings, "newcomer2"))
    assert response.status_code == 200, response.text
    assert response.json()["credits"] == 0
    assert response.headers["X-Balance-Version"] == "0"
    async with database.read() as reader:
        assert await find_account(reader, AccountKind.USER, "newcomer2") is not None


async def test_a_hot_read_decodes_its_columns_as_a_session_does(database: Database) -> None:
    async with database.transaction() as writer:
        account = await get_or_create_account(writer, AccountKind.USER, "hot1", currency="usd")
        account.settings = {"currency": "usd", "nested": [1, 2]}
    read = PreparedRead(
        select(BillingAccount.id, BillingAccount.settings, BillingAccount.created_at).where(
            BillingAccount.external_id == bindparam("external_id", None)
        )
    )
    rows = await database.read_rows(read, external_id="hot1")
    async with database.read() as reader:
        expected = (await reader.execute(read.statement, {"external_id": "hot1"})).one()
    assert rows == [tuple(expected)]
    assert rows[0][1] == {"currency": "usd", "nested": [1, 2]}
    assert rows[0][2].tzinfo is not None
    assert await database.read_rows(read, external_id="nobody") == []


@pytest.mark.postgres
async def test_dropped_postgres_connections_are_replaced_without_an_error(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    if database.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has no server to drop connections")
    headers = bearer(settings, "alice")
    path = "/api/v1/payments/subscription/status"
    # Fill the pool with a few connections, then have the server drop every one of them.
    answers = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    async with database.engine.connect() as admin:
        dropped = await admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        assert dropped.scalar_one() >= 1
        await admin.rollback()
    for _ in range(3):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
    # Again, for the credit balance's read.
    await asyncio.gather(*(client.get("/api/billing/balance", headers=headers) for _ in range(5)))
    async with database.engine.connect() as admin:
        await admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        await admin.rollback()
    for _ in range(3):
        response = await client.get("/api/billing/balance", headers=headers)
        assert response.status_code == 200, response.text
    async with database.transaction() as writer:  # a writer too
        await get_or_create_account(writer, AccountKind.USER, "bob", currency="usd")
