"""credits: wallets (a version per account), lots and their draws, holds, purchases, refunds,
and the mirror of Stripe's billing history

Revision ID: 0009_credits
Revises: 0001_core
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import BigIntPK, JSONType, UTCDateTime

revision: str = "0009_credits"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("credits",)
depends_on: str | Sequence[str] | None = None


def _account(table: str, *, fk: bool = True) -> sa.Column[str]:
    if fk:
        return sa.Column(
            "account_id",
            sa.String(40),
            sa.ForeignKey(
                "billing_accounts.id", name=op.f(f"fk_{table}_account_id_billing_accounts")
            ),
            nullable=False,
        )
    return sa.Column("account_id", sa.String(40), nullable=False)


def upgrade() -> None:
    op.create_table(
        "credit_wallets",
        _account("credit_wallets"),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_credit_wallets")),
    )
    op.create_table(
        "credit_lots",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        _account("credit_lots"),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("expired_at", UTCDateTime(), nullable=True),
        sa.Column("ledger_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lots")),
        sa.UniqueConstraint("key", name=op.f("uq_credit_lots_key")),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_credit_lots_remaining_non_negative")),
        sa.CheckConstraint(
            "remaining <= granted", name=op.f("ck_credit_lots_remaining_at_most_granted")
        ),
    )
    op.create_index("ix_credit_lots_account_remaining", "credit_lots", ["account_id", "remaining"])
    op.create_index("ix_credit_lots_expires_at", "credit_lots", ["expires_at"])
    op.create_table(
        "credit_lot_draws",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column(
            "lot_id",
            sa.BigInteger(),
            sa.ForeignKey("credit_lots.id", name=op.f("fk_credit_lot_draws_lot_id_credit_lots")),
            nullable=False,
        ),
        _account("credit_lot_draws", fk=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lot_draws")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_lot_draws_positive")),
    )
    op.create_index("ix_credit_lot_draws_lot_id", "credit_lot_draws", ["lot_id"])
    op.create_index("ix_credit_lot_draws_account_id", "credit_lot_draws", ["account_id"])
    op.create_index("ix_credit_lot_draws_reference", "credit_lot_draws", ["reference"])
    op.create_table(
        "credit_holds",
        sa.Column("id", sa.String(64), nullable=False),
        _account("credit_holds"),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_holds")),
        sa.CheckConstraint(
            "captured >= 0 AND captured <= amount", name=op.f("ck_credit_holds_capture_within_hold")
        ),
    )
    op.create_index("ix_credit_holds_account_id", "credit_holds", ["account_id"])
    op.create_table(
        "credit_purchases",
        sa.Column("id", sa.String(64), nullable=False),
        _account("credit_purchases"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("package_id", sa.String(64), nullable=True),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("stripe_checkout_session_id", sa.String(255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(255), nullable=True),
        sa.Column("checkout_url", sa.Text(), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("credits_clawed_back", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_purchases")),
        sa.UniqueConstraint(
            "stripe_checkout_session_id",
            name=op.f("uq_credit_purchases_stripe_checkout_session_id"),
        ),
    )
    op.create_index(
        "ix_credit_purchases_account_created", "credit_purchases", ["account_id", "created_at"]
    )
    op.create_index(
        "ix_credit_purchases_stripe_payment_intent_id",
        "credit_purchases",
        ["stripe_payment_intent_id"],
    )
    op.create_table(
        "credit_refunds",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column(
            "purchase_id",
            sa.String(64),
            sa.ForeignKey(
                "credit_purchases.id", name=op.f("fk_credit_refunds_purchase_id_credit_purchases")
            ),
            nullable=False,
        ),
        _account("credit_refunds", fk=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_refunds")),
    )
    op.create_index("ix_credit_refunds_purchase_id", "credit_refunds", ["purchase_id"])
    op.create_index("ix_credit_refunds_account_id", "credit_refunds", ["account_id"])
    op.create_table(
        "billing_history_items",
        sa.Column("id", sa.String(255), nullable=False),
        _account("billing_history_items"),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("subscription_id", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_history_items")),
    )
    op.create_index(
        "ix_billing_history_account_created",
        "billing_history_items",
        ["account_id", "created_at"],
    )


def downgrade() -> None:
    for table in (
        "billing_history_items",
        "credit_refunds",
        "credit_purchases",
        "credit_holds",
        "credit_lot_draws",
        "credit_lots",
        "credit_wallets",
    ):
        op.drop_table(table)
