"""Delivery events from SendGrid's Event Webhook, delivery states, and bad addresses on employees.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sg_event_id", sa.String(length=100), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_events_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_events")),
        sa.UniqueConstraint("sg_event_id", name=op.f("uq_delivery_events_sg_event_id")),
    )
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_events_delivery_id"), ["delivery_id"], unique=False)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("mail_state_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("mail_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("problem_posted_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slack_summary", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("delivery_update_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("delivery_updated_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bad_address", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("bad_address_event", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("bad_address_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("bad_address_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_column("bad_address_at")
        batch_op.drop_column("bad_address_reason")
        batch_op.drop_column("bad_address_event")
        batch_op.drop_column("bad_address")

    with op.batch_alter_table("credential_batches", schema=None) as batch_op:
        batch_op.drop_column("delivery_updated_at")
        batch_op.drop_column("delivery_update_due_at")
        batch_op.drop_column("slack_summary")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("problem_posted_at")
        batch_op.drop_column("mail_reason")
        batch_op.drop_column("mail_state_at")
        batch_op.drop_column("mail_state")

    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_events_delivery_id"))

    op.drop_table("delivery_events")
