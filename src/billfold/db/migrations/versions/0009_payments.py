"""payments: payment methods, payment settings (autopay), payments and their attempts

Revision ID: 0009_payments
Revises: 0001_core
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import JSONType, UTCDateTime

revision: str = "0009_payments"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("payments",)
depends_on: str | Sequence[str] | None = None


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["billing_accounts.id"],
        name=op.f(f"fk_{table}_account_id_billing_accounts"),
    )


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("brand", sa.String(32), nullable=True),
        sa.Column("last4", sa.String(4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("bank_name", sa.String(255), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("setup_intent_id", sa.String(255), nullable=True),
        sa.Column("verification_failures", sa.Integer(), nullable=False),
        sa.Column("blocked_reason", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        _account_fk("payment_methods"),
    )
    op.create_index(
        op.f("ix_payment_methods_account_id"), "payment_methods", ["account_id"], unique=False
    )
    op.create_table(
        "payment_settings",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("autopay", sa.Boolean(), nullable=False),
        sa.Column("default_payment_method_id", sa.String(255), nullable=True),
        sa.Column("autopay_failures", sa.Integer(), nullable=False),
        sa.Column("autopay_retry_at", UTCDateTime(), nullable=True),
        sa.Column("autopay_stopped_reason", sa.Text(), nullable=True),
        sa.Column("autopay_stopped_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_payment_settings")),
        _account_fk("payment_settings"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("payment_method_id", sa.String(255), nullable=True),
        sa.Column("requested_payment_method_id", sa.String(255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(255), nullable=True),
        sa.Column("stripe_charge_id", sa.String(255), nullable=True),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("dispute_id", sa.String(255), nullable=True),
        sa.Column("dispute_status", sa.String(32), nullable=True),
        sa.Column("dispute_reason", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        _account_fk("payments"),
        sa.UniqueConstraint(
            "stripe_payment_intent_id", name=op.f("uq_payments_stripe_payment_intent_id")
        ),
    )
    op.create_index("ix_payments_account_created", "payments", ["account_id", "created_at"])
    op.create_index(op.f("ix_payments_status"), "payments", ["status"], unique=False)
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(80), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("payment_method_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("stripe_payment_intent_id", sa.String(255), nullable=True),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("decline_code", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_attempts")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_attempts_payment_id_payments")
        ),
    )
    op.create_index(
        op.f("ix_payment_attempts_payment_id"), "payment_attempts", ["payment_id"], unique=False
    )
    op.create_index(
        "ix_payment_attempts_reserved",
        "payment_attempts",
        ["state"],
        postgresql_where=sa.text("state = 'reserved'"),
    )


def downgrade() -> None:
    op.drop_table("payment_attempts")
    op.drop_table("payments")
    op.drop_table("payment_settings")
    op.drop_table("payment_methods")
