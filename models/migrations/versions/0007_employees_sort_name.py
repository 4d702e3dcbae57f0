"""Employees by name as a reader expects: a folded sort key, and an ICU-collated index on PostgreSQL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:50:00
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ICU_COLLATION = "und-x-icu"
_EXTRA_FOLDS = str.maketrans(
    {
        "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
        "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
        "ı": "i", "ħ": "h", "Ħ": "H",  # noqa: RUF001
    }
)  # fmt: skip


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_EXTRA_FOLDS))
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def _sort_key(first_name: str, last_name: str) -> str:
    """A copy of `models.name_sort_key` as of this revision (a migration does not change with the code)."""
    return f"{_fold(last_name)}\t{_fold(first_name)}"


def upgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sort_name", sa.Text(), nullable=False, server_default=""))
    employees = sa.table(
        "employees",
        sa.column("id", sa.Integer()),
        sa.column("first_name", sa.String()),
        sa.column("last_name", sa.String()),
        sa.column("sort_name", sa.Text()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(employees.c.id, employees.c.first_name, employees.c.last_name)).all()
    if rows:
        connection.execute(
            employees.update().where(employees.c.id == sa.bindparam("b_id")),
            [{"b_id": row.id, "sort_name": _sort_key(row.first_name, row.last_name)} for row in rows],
        )
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.alter_column("sort_name", server_default=None)
        batch_op.drop_index("ix_employees_by_name")
        batch_op.create_index("ix_employees_by_sort_name", ["sort_name", "employee_number"], unique=False)
    if connection.dialect.name == "postgresql" and _has_icu(connection):
        op.execute(
            f'CREATE INDEX ix_employees_by_name_icu ON employees (last_name COLLATE "{ICU_COLLATION}", '
            f'first_name COLLATE "{ICU_COLLATION}", employee_number)'
        )


def _has_icu(connection: sa.Connection) -> bool:
    found = connection.scalar(
        sa.text("SELECT 1 FROM pg_collation WHERE collname = :name"), {"name": ICU_COLLATION}
    )
    return found is not None


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_employees_by_name_icu")
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_index("ix_employees_by_sort_name")
        batch_op.create_index(
            "ix_employees_by_name", ["last_name", "first_name", "employee_number"], unique=False
        )
        batch_op.drop_column("sort_name")
