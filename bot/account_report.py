"""The account report as CSV: one row per account, streamed from the database in constant memory.

Every cell that a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
carriage return) is prefixed with `'`, so names and usernames from the HR export cannot run code in
the admin's spreadsheet (OWASP's "CSV injection").
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bot.accounts import status_column
from models import Account, Delivery, Employee, Role, account_roles, full_name, utcnow

HEADER = (
    "employee_number",
    "name",
    "email",
    "department",
    "username",
    "status",
    "roles",
    "last_emailed_utc",
    "delivery_state",
    "first_sign_in_utc",
    "password_changed_utc",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_ENCODING = "utf-8-sig"
"""UTF-8 with a byte-order mark: without it Excel reads the file as the local code page and mangles
accents. Open the report's file with this encoding."""
ROWS_PER_FETCH = 2000
_SEPARATOR = "\x1f"


def neutralise(cell: str) -> str:
    """`cell`, made inert for spreadsheets when it begins like a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _time(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


def account_rows(session: Session, now: datetime | None = None) -> Iterator[tuple[str, ...]]:
    """The report's rows (header excluded), by employee number, fetched ROWS_PER_FETCH at a time
    (a server-side cursor on PostgreSQL)."""
    now = now or utcnow()
    roles = (
        select(func.aggregate_strings(Role.name, _SEPARATOR))
        .select_from(account_roles)
        .join(Role, Role.id == account_roles.c.role_id)
        .where(account_roles.c.account_id == Account.id)
        .scalar_subquery()
    )
    delivery = (  # SendGrid's word (delivered, bounced...) once its events came, else credbot's status
        select(func.coalesce(Delivery.mail_state, Delivery.status))
        .where(Delivery.employee_id == Employee.id)
        .order_by(Delivery.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(
            Employee.employee_number,
            Employee.first_name,
            Employee.last_name,
            Employee.email,
            Employee.department,
            Account.username,
            status_column(now),
            roles,
            Account.credentials_emailed_at,
            delivery,
            Account.first_sign_in_at,
            Account.password_changed_at,
        )
        .join(Account, Account.employee_id == Employee.id)
        .order_by(Employee.employee_number)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        # The plan's cost (two small correlated subqueries per row) makes PostgreSQL compile it with JIT,
        # which took longer (about 0.5 s) than running it; this transaction does without.
        session.execute(text("SET LOCAL jit = off"))
    for (
        number,
        first,
        last,
        email,
        department,
        username,
        status,
        role_names,
        emailed,
        state,
        signed_in,
        changed,
    ) in session.execute(query):
        yield (
            number,
            full_name(first, last),
            email or "",
            department or "",
            username,
            status,
            ", ".join(sorted(role_names.split(_SEPARATOR), key=str.casefold)) if role_names else "",
            _time(emailed),
            state or "",
            _time(signed_in),
            _time(changed),
        )


def write_accounts_csv(session: Session, out: IO[str], now: datetime | None = None) -> int:
    """Write the report to `out` (opened with newline="" and CSV_ENCODING); the number of accounts."""
    writer = csv.writer(out)
    writer.writerow(HEADER)
    count = 0
    for row in account_rows(session, now):
        writer.writerow([neutralise(cell) for cell in _cells(row)])
        count += 1
    return count


def _cells(row: tuple[Any, ...]) -> list[str]:
    return ["" if cell is None else str(cell) for cell in row]
