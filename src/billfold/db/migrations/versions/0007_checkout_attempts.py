"""checkout attempts: the account's subscription Checkout session, reserved before Stripe is
called, out of the settings JSON

Revision ID: 0007_checkout_attempts
Revises: 0001_core
Create Date: 2026-12-04

An account's recorded open session (`settings["open_checkout_session"] = {"id", "offer"}`)
becomes an `open` attempt; the downgrade puts the account's current open attempt back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from billfold.db.base import JSONType, UTCDateTime

revision: str = "0007_checkout_attempts"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("checkout_attempts",)
depends_on: str | Sequence[str] | None = None

OPEN_CHECKOUT_KEY = "open_checkout_session"
_CURRENT = "state != 'closed'"

_accounts = sa.table(
    "billing_accounts", sa.column("id", sa.String), sa.column("settings", JSONType)
)


def upgrade() -> None:
    attempts = op.create_table(
        "checkout_attempts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("offer", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("stripe_checkout_session_id", sa.String(255), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_attempts")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_checkout_attempts_account_id_billing_accounts"),
        ),
        sa.UniqueConstraint("account_id", "seq", name=op.f("uq_checkout_attempts_account_id_seq")),
    )
    op.create_index(
        "ix_checkout_attempts_one_current",
        "checkout_attempts",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text(_CURRENT),
        postgresql_where=sa.text(_CURRENT),
    )
    bind = op.get_bind()
    now = datetime.now(UTC)  # a migration has no injected clock: the moment it ran
    for account_id, settings in bind.execute(sa.select(_accounts.c.id, _accounts.c.settings)):
        recorded = settings.get(OPEN_CHECKOUT_KEY) if isinstance(settings, dict) else None
        if isinstance(recorded, dict) and recorded.get("id"):
            session_id = str(recorded["id"])
            digest = hashlib.sha256(f"{account_id}|migrated|{session_id}".encode()).hexdigest()
            bind.execute(
                attempts.insert().values(
                    id=f"chk_{digest[:40]}",
                    account_id=account_id,
                    seq=1,
                    offer=str(recorded.get("offer") or ""),
                    state="open",
                    request={},
                    stripe_checkout_session_id=session_id,
                    url=None,
                    created_at=now,
                    updated_at=now,
                )
            )
        if isinstance(settings, dict) and OPEN_CHECKOUT_KEY in settings:
            rest = {k: v for k, v in settings.items() if k != OPEN_CHECKOUT_KEY}
            bind.execute(
                _accounts.update().where(_accounts.c.id == account_id).values(settings=rest)
            )


def downgrade() -> None:
    bind = op.get_bind()
    current = sa.text(
        "SELECT a.account_id, a.stripe_checkout_session_id, a.offer, b.settings "
        "FROM checkout_attempts a JOIN billing_accounts b ON b.id = a.account_id "
        "WHERE a.state = 'open'"
    ).columns(
        sa.column("account_id", sa.String),
        sa.column("stripe_checkout_session_id", sa.String),
        sa.column("offer", sa.String),
        sa.column("settings", JSONType),
    )
    for account_id, session_id, offer, settings in bind.execute(current).all():
        bind.execute(
            _accounts.update()
            .where(_accounts.c.id == account_id)
            .values(
                settings={**(settings or {}), OPEN_CHECKOUT_KEY: {"id": session_id, "offer": offer}}
            )
        )
    op.drop_index("ix_checkout_attempts_one_current", table_name="checkout_attempts")
    op.drop_table("checkout_attempts")
