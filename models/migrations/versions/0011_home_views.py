"""App Home as last published per user: when it was opened, and its view hash.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "home_views",
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("view_hash", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("slack_user_id", name=op.f("pk_home_views")),
    )
    op.create_index(op.f("ix_home_views_opened_at"), "home_views", ["opened_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_home_views_opened_at"), table_name="home_views")
    op.drop_table("home_views")
