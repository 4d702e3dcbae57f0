"""SCIM changes grouped for the audit channel: the notices, the people they name, and how far the
grouping has read the audit log.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scim_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grouped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("ts", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_notices")),
    )
    op.create_index(op.f("ix_scim_notices_ts"), "scim_notices", ["ts"], unique=False)
    op.create_table(
        "scim_notice_people",
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employees.id"],
            name=op.f("fk_scim_notice_people_employee_id_employees"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["scim_notices.id"],
            name=op.f("fk_scim_notice_people_notice_id_scim_notices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("notice_id", "employee_id", "change", name=op.f("pk_scim_notice_people")),
    )
    op.create_index(
        "ix_scim_notice_people_change_employee", "scim_notice_people", ["change", "employee_id"], unique=False
    )
    op.create_table(
        "scim_notice_marks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scim_notice_marks")),
    )


def downgrade() -> None:
    op.drop_table("scim_notice_marks")
    op.drop_index("ix_scim_notice_people_change_employee", table_name="scim_notice_people")
    op.drop_table("scim_notice_people")
    op.drop_index(op.f("ix_scim_notices_ts"), table_name="scim_notices")
    op.drop_table("scim_notices")
