"""Scheduled sends: each delivery's moment, and what the admin confirmed for a scheduled batch.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_deliveries_status_due_at", ["status", "due_at"], unique=False)
    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.drop_column("schedule")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status_due_at")
        batch_op.drop_column("due_at")
