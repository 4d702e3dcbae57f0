"""Recovery requests from the portal, approved or denied by an admin in Slack; the employee's manager.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manager", sa.String(length=200), nullable=True))
    op.create_table(
        "recovery_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("card_channel", sa.String(length=32), nullable=True),
        sa.Column("card_ts", sa.String(length=32), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_recovery_requests_account_status", "recovery_requests", ["account_id", "status"], unique=False
    )
    op.create_index("ix_recovery_requests_status", "recovery_requests", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_recovery_requests_status", table_name="recovery_requests")
    op.drop_index("ix_recovery_requests_account_status", table_name="recovery_requests")
    op.drop_table("recovery_requests")
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_column("manager")
