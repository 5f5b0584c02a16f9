"""Known-answer vectors for the audit chain's hash.

The hashes below were computed once from the implementation and are written out by hand: a
change to the canonical JSON, the timestamp format, the fields hashed or their names changes
them, and would break every chain already stored. Such a change needs a migration of the
stored chains (and new vectors), never just new numbers here.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from billfold.audit.models import CHAIN_HEAD_ID, GENESIS_HASH, AuditChainHead, AuditEntry
from billfold.audit.service import canonical_json, entry_hash, hash_of, record_event
from billfold.audit.verify import verify_chain
from billfold.db.engine import Database

# Three entries as they were stored: fixed ids, instants, details (non-ASCII, nested, empty).
ENTRIES: list[dict[str, Any]] = [
    {
        "seq": 1,
        "entry_id": "aud_0000000000000000000001",
        "occurred_at": datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC),
        "action": "checkout.created",
        "actor": "user:alice",
        "account_id": "acct_0000000000000000000001",
        "target": "cs_test_a1",
        "details_json": canonical_json({"price": "price_monthly", "quantity": 1}),
        "ip": "203.0.113.7",
        "request_id": "req-1",
    },
    {
        "seq": 2,
        # Given in UTC+02:00: hashed as the same instant in UTC.
        "entry_id": "aud_0000000000000000000002",
        "occurred_at": datetime(
            2026, 2, 28, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))
        ),
        "action": "credits.granted",
        "actor": "api_key:ak_test",
        "account_id": "acct_0000000000000000000001",
        "target": None,
        "details_json": canonical_json(
            {
                "amount": 500,
                "note": "caf\u00e9 \u2603",
                "tags": ["b", "a"],
                "nested": {"z": 1, "a": None},
            }
        ),
        "ip": None,
        "request_id": None,
    },
    {
        "seq": 3,
        "entry_id": "aud_0000000000000000000003",
        "occurred_at": datetime(2028, 2, 29, 0, 0, 0, tzinfo=UTC),
        "action": "subscription.canceled",
        "actor": "stripe",
        "account_id": None,
        "target": "sub_123",
        "details_json": canonical_json({}),
        "ip": None,
        "request_id": "evt_1",
    },
]

EXPECTED_DETAILS_2 = (
    '{"amount":500,"nested":{"a":null,"z":1},"note":"caf\\u00e9 \\u2603","tags":["b","a"]}'
)
# What is hashed for the first entry, spelled out: sorted keys, no spaces, ASCII, UTC with
# microseconds, `details` as its canonical JSON text, the previous hash (genesis: 64 zeros).
PAYLOAD_1 = (
    '{"account_id":"acct_0000000000000000000001","action":"checkout.created",'
    '"actor":"user:alice","details":"{\\"price\\":\\"price_monthly\\",\\"quantity\\":1}",'
    '"id":"aud_0000000000000000000001","ip":"203.0.113.7",'
    '"occurred_at":"2026-01-15T12:00:00.123456Z","prev_hash":"' + "0" * 64 + '",'
    '"request_id":"req-1","seq":1,"target":"cs_test_a1"}'
)
EXPECTED_HASHES = [
    "26ce9788415b9e77a9801f0541aa67ae84d91aef1b61b8468a11908dbfb33553",
    "3d47da5236fa46fbbb7d8d2ba4a932a511013e4fa32f1cb4ce1fc51c54417236",
    "66e797499694be218d6c25995e07d7f8506f0997011d2803ef4670a8083a4e4f",
]


def _chained() -> list[AuditEntry]:
    rows, prev = [], GENESIS_HASH
    for fields, expected in zip(ENTRIES, EXPECTED_HASHES, strict=True):
        values = {k: v for k, v in fields.items() if k != "entry_id"}
        rows.append(
            AuditEntry(id=fields["entry_id"], prev_hash=prev, entry_hash=expected, **values)
        )
        prev = expected
    return rows


def test_canonical_json_is_stable() -> None:
    assert ENTRIES[1]["details_json"] == EXPECTED_DETAILS_2
    assert ENTRIES[2]["details_json"] == "{}"


def test_the_first_hash_is_sha256_of_the_payload_spelled_out() -> None:
    assert hashlib.sha256(PAYLOAD_1.encode("ascii")).hexdigest() == EXPECTED_HASHES[0]


def test_entry_hashes_match_the_known_answers() -> None:
    computed, prev = [], GENESIS_HASH
    for fields in ENTRIES:
        prev = entry_hash(prev_hash=prev, **fields)
        computed.append(prev)
    assert computed == EXPECTED_HASHES


async def test_a_stored_chain_still_verifies_and_grows(database: Database) -> None:
    """Rows written with the known hashes (as an older billfold wrote them) verify, and the
    next entry links to the last of them."""
    async with database.transaction() as session:
        session.add_all(_chained())
        session.add(AuditChainHead(id=CHAIN_HEAD_ID, seq=3, entry_hash=EXPECTED_HASHES[2]))
    async with database.transaction() as session:
        stored = (
            (await session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars().all()
        )
        assert [hash_of(row) for row in stored] == EXPECTED_HASHES
        report = await verify_chain(session)
    assert report.ok and report.checked == 3
    async with database.transaction() as session:
        await record_event(session, action="checkout.created", actor="user:bob", account_id=None)
    async with database.transaction() as session:
        newest = (await session.execute(select(AuditEntry).where(AuditEntry.seq == 4))).scalar_one()
        assert newest.prev_hash == EXPECTED_HASHES[2]
        assert (await verify_chain(session)).ok
