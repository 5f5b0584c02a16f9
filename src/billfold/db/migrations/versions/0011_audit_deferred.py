"""audit: entries recorded now and chained later (`audit_deferred`)

Revision ID: 0011_audit_deferred
Revises: 0003_auth_audit
Create Date: 2026-12-04

A hot path (a usage debit) writes its audit entry into `audit_deferred` in its own transaction,
one INSERT and no lock; the `audit.chain_deferred` job moves such entries into the hash chain
in batches, each under one hold of the chain head's lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import BigIntPK, UTCDateTime

revision: str = "0011_audit_deferred"
down_revision: str | Sequence[str] | None = "0003_auth_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_deferred",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=True),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_deferred")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_audit_deferred_entry_id")),
    )


def downgrade() -> None:
    op.drop_table("audit_deferred")
