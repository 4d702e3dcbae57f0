"""SCIM provisioning: the identity providers' tokens, the employee's externalId and pending username, and
indexes for looking employees up one at a time by username and address (ignoring case).

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-02 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scim_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_scim_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_scim_tokens_token_hash")),
    )
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("pending_username", sa.String(length=100), nullable=True))
        batch_op.create_index(batch_op.f("ix_employees_external_id"), ["external_id"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_employees_pending_username"), ["pending_username"])
    op.create_index("ix_employees_lower_email", "employees", [sa.text("lower(email)")])
    op.create_index("ix_employees_lower_personal_email", "employees", [sa.text("lower(personal_email)")])
    op.create_index("ix_accounts_lower_username", "accounts", [sa.text("lower(username)")])


def downgrade() -> None:
    op.drop_index("ix_accounts_lower_username", table_name="accounts")
    op.drop_index("ix_employees_lower_personal_email", table_name="employees")
    op.drop_index("ix_employees_lower_email", table_name="employees")
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_employees_pending_username"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_employees_external_id"))
        batch_op.drop_column("pending_username")
        batch_op.drop_column("external_id")
    op.drop_table("scim_tokens")
