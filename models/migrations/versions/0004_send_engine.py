"""The send engine: delivery claims under a lease, in-doubt deliveries, resumable batches.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sending_delivery_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sending_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("resumed", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.alter_column("resumed", server_default=None)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("welcome_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_status"))
        batch_op.drop_column("welcome_sent_at")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("lease_until")
    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.drop_column("resumed")
        batch_op.drop_column("stop_reason")
        batch_op.drop_column("heartbeat_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("sending_until")
        batch_op.drop_column("sending_delivery_id")
