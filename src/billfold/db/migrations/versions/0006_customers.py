"""customers: the Stripe customer's state in typed columns, out of the settings JSON

Revision ID: 0006_customers
Revises: 0001_core
Create Date: 2026-12-04

`stripe_customer_generation` (how many of the account's Stripe customers were deleted) moves
out of `billing_accounts.settings`; `stripe_customer_created_at` is new (NULL for customers
linked before it existed). The downgrade puts the generation back into the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from billfold.db.base import JSONType, UTCDateTime

revision: str = "0006_customers"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("customers",)
depends_on: str | Sequence[str] | None = None

GENERATION_KEY = "stripe_customer_generation"

_accounts = sa.table(
    "billing_accounts",
    sa.column("id", sa.String),
    sa.column("settings", JSONType),
    sa.column("stripe_customer_generation", sa.Integer),
)


def _rows() -> list[Any]:
    bind = op.get_bind()
    return list(bind.execute(sa.select(_accounts.c.id, _accounts.c.settings)).all())


def upgrade() -> None:
    with op.batch_alter_table("billing_accounts") as batch:
        batch.add_column(sa.Column("stripe_customer_created_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column(
                "stripe_customer_generation", sa.Integer(), server_default="0", nullable=False
            )
        )
    bind = op.get_bind()
    for account_id, settings in _rows():
        if not isinstance(settings, dict) or GENERATION_KEY not in settings:
            continue
        value = settings.pop(GENERATION_KEY)
        bind.execute(
            _accounts.update()
            .where(_accounts.c.id == account_id)
            .values(
                settings=settings,
                stripe_customer_generation=value if isinstance(value, int) else 0,
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    generations = dict(
        bind.execute(
            sa.select(_accounts.c.id, _accounts.c.stripe_customer_generation).where(
                _accounts.c.stripe_customer_generation > 0
            )
        ).all()
    )
    for account_id, settings in _rows():
        if account_id in generations:
            bind.execute(
                _accounts.update()
                .where(_accounts.c.id == account_id)
                .values(settings={**(settings or {}), GENERATION_KEY: generations[account_id]})
            )
    with op.batch_alter_table("billing_accounts") as batch:
        batch.drop_column("stripe_customer_generation")
        batch.drop_column("stripe_customer_created_at")
