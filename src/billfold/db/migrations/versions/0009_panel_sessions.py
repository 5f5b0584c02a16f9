"""panel sessions: the billing panel's signed-in browsers, and the sign-in links spent

Revision ID: 0009_panel_sessions
Revises: 0001_core
Create Date: 2026-12-04

A session row keeps only the SHA-256 of its token. A sign-in link's `jti` is kept once it is
redeemed, so a link opens one session, ever.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billfold.db.base import UTCDateTime

revision: str = "0009_panel_sessions"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("panel_sessions",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "panel_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("operator", sa.Boolean(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("signed_out_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_panel_sessions_account_id_billing_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel_sessions")),
    )
    op.create_index("ix_panel_sessions_expires_at", "panel_sessions", ["expires_at"])
    op.create_table(
        "panel_sign_in_links",
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("redeemed_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_panel_sign_in_links")),
    )


def downgrade() -> None:
    op.drop_table("panel_sign_in_links")
    op.drop_index("ix_panel_sessions_expires_at", table_name="panel_sessions")
    op.drop_table("panel_sessions")
