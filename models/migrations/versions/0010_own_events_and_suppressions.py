"""Only credbot's own delivery events: the installation's id; deliveries that bypass the bounce list;
delivery events indexed by when they were received, for pruning.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bypass_bounce_list", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_events_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_events_received_at"))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("bypass_bounce_list")
    op.drop_table("installation")
