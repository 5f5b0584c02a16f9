"""subscription changes: a cancel, reactivation or plan change, reserved before Stripe is
called (so no lock is held while Stripe answers)

Revision ID: 0008_subscription_changes
Revises: 0004_subscriptions
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import JSONType, UTCDateTime

revision: str = "0008_subscription_changes"
down_revision: str | Sequence[str] | None = "0004_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RESERVED = "state = 'reserved'"


def upgrade() -> None:
    op.create_table(
        "subscription_changes",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_changes")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_changes_subscription_id_subscriptions"),
        ),
        sa.UniqueConstraint(
            "subscription_id", "seq", name=op.f("uq_subscription_changes_subscription_id_seq")
        ),
    )
    op.create_index(
        "ix_subscription_changes_one_reserved",
        "subscription_changes",
        ["subscription_id"],
        unique=True,
        sqlite_where=sa.text(_RESERVED),
        postgresql_where=sa.text(_RESERVED),
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_changes_one_reserved", table_name="subscription_changes")
    op.drop_table("subscription_changes")
