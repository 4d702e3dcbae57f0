"""Index accounts.sending_delivery_id: the send engine's lease renewal finds accounts by it each second.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 13:30:28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_accounts_sending_delivery_id", "accounts", ["sending_delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_accounts_sending_delivery_id", table_name="accounts")
