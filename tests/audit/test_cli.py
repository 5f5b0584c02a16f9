"""`billfold audit verify` and `billfold apikey ...` against both databases, and tampering done
behind billfold's back with raw SQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner, Result

from billfold.audit.models import AuditEntry
from billfold.audit.service import hash_of, record_event
from billfold.auth.models import ApiKey
from billfold.cli import app as cli_app
from billfold.config import get_settings
from billfold.db.engine import Database


@pytest.fixture
def cli_database(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The test database, configured as the one the `billfold` command uses."""
    monkeypatch.setenv("BILLFOLD_DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args))


async def _append(db: Database, n: int) -> None:
    for i in range(n):
        async with db.transaction() as session:
            await record_event(
                session,
                action="charge.created",
                actor="api_key:ak_1",
                account_id="acct_1",
                details={"amount": 1000 + i, "currency": "usd"},
            )


@asynccontextmanager
async def behind_billfolds_back(db: Database) -> AsyncIterator[None]:
    """Lift the append-only trigger for a moment, as someone with database access could."""
    async with db.engine.begin() as conn:
        if db.is_sqlite:
            ddl = (
                await conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'audit_log_append_only'")
                )
            ).scalar_one()
            await conn.execute(text("DROP TRIGGER audit_log_append_only"))
        else:
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
    try:
        yield
    finally:
        async with db.engine.begin() as conn:
            if db.is_sqlite:
                await conn.execute(text(ddl))
            else:
                await conn.execute(
                    text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
                )


async def _raw(db: Database, sql: str) -> None:
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(sql)


async def test_verify_passes_on_an_intact_log(cli_database: Database) -> None:
    await _append(cli_database, 5)
    result = await invoke("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "5 entries verified" in result.output


async def test_verify_passes_on_an_empty_log(cli_database: Database) -> None:
    result = await invoke("audit", "verify")
    assert result.exit_code == 0, result.output


_INSERTED = (
    "INSERT INTO audit_log (seq, id, occurred_at, action, actor, account_id, details_json, "
    "prev_hash, entry_hash) SELECT 6, 'aud_forged', occurred_at, 'credits.granted', actor, "
    "account_id, details_json, entry_hash, '" + "f" * 64 + "' FROM audit_log WHERE seq = 5"
)


@pytest.mark.parametrize(
    ("tampering", "broken_at", "reason"),
    [
        (
            'UPDATE audit_log SET details_json = \'{"amount":1,"currency":"usd"}\' WHERE seq = 3',
            3,
            "altered",
        ),
        ("UPDATE audit_log SET account_id = 'acct_2' WHERE seq = 1", 1, "altered"),
        ("UPDATE audit_log SET action = 'charge.refunded' WHERE seq = 5", 5, "altered"),
        ("DELETE FROM audit_log WHERE seq = 2", 2, "missing"),
        ("DELETE FROM audit_log WHERE seq >= 4", 4, "missing"),
        (_INSERTED, 6, "not in the chain"),
    ],
    ids=["details", "account", "action", "deleted-row", "deleted-tail", "inserted-row"],
)
async def test_verify_detects_tampering(
    cli_database: Database, tampering: str, broken_at: int, reason: str
) -> None:
    await _append(cli_database, 5)
    async with behind_billfolds_back(cli_database):
        await _raw(cli_database, tampering)
    result = await invoke("audit", "verify")
    assert result.exit_code == 1
    assert f"broken at entry {broken_at}" in result.output and reason in result.output


async def test_verify_detects_a_rehashed_row(cli_database: Database) -> None:
    """Recomputing the altered row's own hash is not enough: the next row's link breaks."""
    await _append(cli_database, 4)
    async with cli_database.transaction() as session:
        row = (await session.execute(select(AuditEntry).where(AuditEntry.seq == 2))).scalar_one()
        row.actor = "user:mallory"
        forged = hash_of(row)
        await session.rollback()
    async with behind_billfolds_back(cli_database):
        await _raw(
            cli_database,
            f"UPDATE audit_log SET actor = 'user:mallory', entry_hash = '{forged}' WHERE seq = 2",
        )
    result = await invoke("audit", "verify")
    assert result.exit_code == 1
    assert "broken at entry 3" in result.output and "does not link" in result.output


async def test_apikey_create_list_revoke(cli_database: Database) -> None:
    created = await invoke("apikey", "create", "web backend")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("bf_") and len(secret) > 40
    async with cli_database.transaction() as session:
        key = (
            await session.execute(select(ApiKey).where(ApiKey.name == "web backend"))
        ).scalar_one()
    assert key.name == "web backend"
    assert secret not in (key.key_hash, key.prefix) and secret.startswith(key.prefix)

    rotating = await invoke("apikey", "create", "rotating", "--expires-in", "30d")
    assert rotating.exit_code == 0, rotating.output
    bad_ttl = await invoke("apikey", "create", "x", "--expires-in", "soon")
    assert bad_ttl.exit_code == 1 and "ttl" in bad_ttl.output
    listed = await invoke("apikey", "list")
    assert "expires" in listed.output
    assert listed.exit_code == 0 and key.id in listed.output and secret not in listed.output

    revoked = await invoke("apikey", "revoke", key.id)
    assert revoked.exit_code == 0, revoked.output
    again = await invoke("apikey", "revoke", key.id)
    assert again.exit_code == 1 and "already revoked" in again.output
    unknown = await invoke("apikey", "revoke", "ak_nope")
    assert unknown.exit_code == 1

    async with cli_database.transaction() as session:
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert sorted(actions) == ["api_key.created", "api_key.created", "api_key.revoked"]
    verified = await invoke("audit", "verify")
    assert verified.exit_code == 0


async def test_an_anchor_catches_a_rewritten_chain(cli_database: Database) -> None:
    await _append(cli_database, 5)
    head = await invoke("audit", "head")
    assert head.exit_code == 0
    anchor = head.stdout.strip()
    assert anchor.startswith("5:")
    # Someone with write access alters entry 2 and recomputes every hash after it.
    async with cli_database.transaction() as session:
        rows = list((await session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())
        session.expunge_all()
    rows[1].details_json = '{"amount":1,"currency":"usd"}'
    for previous, row in itertools.pairwise(rows):
        row.prev_hash = previous.entry_hash
        row.entry_hash = hash_of(row)
    async with behind_billfolds_back(cli_database):
        for row in rows[1:]:
            await _raw(
                cli_database,
                f"UPDATE audit_log SET details_json = '{row.details_json}', "
                f"prev_hash = '{row.prev_hash}', entry_hash = '{row.entry_hash}' "
                f"WHERE seq = {row.seq}",
            )
        await _raw(
            cli_database, f"UPDATE audit_chain_head SET entry_hash = '{rows[-1].entry_hash}'"
        )
    # The chain is consistent again, so only the anchor kept elsewhere can tell.
    assert (await invoke("audit", "verify")).exit_code == 0
    result = await invoke("audit", "verify", "--anchor", anchor)
    assert result.exit_code == 1 and "rewritten" in result.output
    missing = await invoke("audit", "verify", "--anchor", "9:" + "0" * 64)
    assert missing.exit_code == 1 and "anchored entry 9 is missing" in missing.output
    bad = await invoke("audit", "verify", "--anchor", "nonsense")
    assert bad.exit_code == 2


async def test_audit_list_shows_the_newest_entries(cli_database: Database) -> None:
    await _append(cli_database, 3)
    result = await invoke("audit", "list", "--limit", "2", "--account", "acct_1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "3"
    assert "charge.created" in lines[0] and '{"amount":1002,"currency":"usd"}' in lines[0]
