"""Whatever a caller puts in an entry comes back from either database with the same hash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.audit.service import hash_of, record_event
from billfold.audit.verify import verify_chain
from billfold.db.engine import Database

_text = st.text(max_size=30)  # any code point, NUL and lone surrogates included
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_details = st.dictionaries(
    _text,
    st.recursive(
        _leaf,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
        max_leaves=12,
    ),
    max_size=6,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(details=_details, actor=_text, target=st.none() | _text)
async def test_any_content_round_trips_with_its_hash(
    database: Database, details: dict[str, Any], actor: str, target: str | None
) -> None:
    async with database.transaction() as session:
        entry = await record_event(
            session,
            action="credits.granted",
            actor=actor.strip() or "someone",
            account_id="acct_p",
            target=target,
            details=details,
        )
    async with database.transaction() as session:
        stored = (
            await session.execute(select(AuditEntry).where(AuditEntry.id == entry.id))
        ).scalar_one()
        assert hash_of(stored) == stored.entry_hash == entry.entry_hash
        assert stored.details == details
        report = await verify_chain(session)
    assert report.ok, report.reason
