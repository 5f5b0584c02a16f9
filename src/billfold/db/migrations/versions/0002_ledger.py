"""ledger: accounts with maintained balances, transactions, entries

Revision ID: 0002_ledger
Revises: 0001_core
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import BigIntPK, JSONType, UTCDateTime

revision: str = "0002_ledger"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("ledger",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("billing_account_id", sa.String(40), nullable=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("overdrawn", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "balance >= 0 OR allow_negative OR overdrawn",
            name=op.f("ck_ledger_accounts_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["billing_account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_ledger_accounts_billing_account_id_billing_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_accounts_key")),
    )
    op.create_index(
        op.f("ix_ledger_accounts_billing_account_id"), "ledger_accounts", ["billing_account_id"]
    )
    op.create_index(
        "ix_ledger_accounts_system_name_unit",
        "ledger_accounts",
        ["name", "unit"],
        postgresql_where=sa.text("billing_account_id IS NULL"),
        sqlite_where=sa.text("billing_account_id IS NULL"),
    )

    op.create_table(
        "ledger_transactions",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_transactions_idempotency_key")),
    )
    op.create_index(
        op.f("ix_ledger_transactions_created_at"), "ledger_transactions", ["created_at"]
    )

    op.create_table(
        "ledger_entries",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_non_zero")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_entries_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(op.f("ix_ledger_entries_transaction_id"), "ledger_entries", ["transaction_id"])
    op.create_index("ix_ledger_entries_account_id_id", "ledger_entries", ["account_id", "id"])


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
