"""The activation funnel (when each account was first signed in to), and employees by name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_sign_in_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.create_index(
            "ix_employees_by_name", ["last_name", "first_name", "employee_number"], unique=False
        )
    # Accounts signed in to before this column existed: their last sign-in is the best estimate.
    op.execute("UPDATE accounts SET first_sign_in_at = last_login_at WHERE last_login_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_index("ix_employees_by_name")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("first_sign_in_at")
