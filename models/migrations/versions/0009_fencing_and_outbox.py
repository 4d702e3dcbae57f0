"""Fencing tokens on deliveries, the confirmation snapshot, and the transactional outbox of jobs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fence", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("confirmed_emailed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "outbox_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_jobs")),
    )


def downgrade() -> None:
    op.drop_table("outbox_jobs")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("confirmed_emailed_at")
        batch_op.drop_column("fence")
