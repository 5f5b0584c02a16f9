"""credits: auto top-up settings and guardrail state, and one auto top-up in flight per account

Revision ID: 0010_credits_autotopup
Revises: 0009_credits
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import UTCDateTime

revision: str = "0010_credits_autotopup"
down_revision: str | Sequence[str] | None = "0009_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_FLIGHT = "kind = 'auto_topup' AND state IN ('reserved', 'pending')"


def upgrade() -> None:
    op.create_table(
        "credit_auto_topups",
        sa.Column(
            "account_id",
            sa.String(40),
            sa.ForeignKey(
                "billing_accounts.id",
                name=op.f("fk_credit_auto_topups_account_id_billing_accounts"),
            ),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("max_per_day", sa.Integer(), nullable=False),
        sa.Column("monthly_limit", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures_in_row", sa.Integer(), nullable=False),
        sa.Column("stopped_reason", sa.Text(), nullable=True),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("stopped_method_id", sa.String(255), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_credit_auto_topups")),
    )
    op.create_index(
        "ix_credit_purchases_auto_topup_in_flight",
        "credit_purchases",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text(_IN_FLIGHT),
        postgresql_where=sa.text(_IN_FLIGHT),
    )


def downgrade() -> None:
    op.drop_index("ix_credit_purchases_auto_topup_in_flight", table_name="credit_purchases")
    op.drop_table("credit_auto_topups")
