"""Directory rows for the Slack tests, created through the ORM."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.directory import make_search_text
from models import Account, Employee


def add_employee(
    session: Session,
    number: str,
    first_name: str = "Ada",
    last_name: str = "Lovelace",
    email: str | None = "",
    username: str | None = "",
    *,
    active: bool = True,
    status: str = "pending",
) -> Employee:
    """An employee (with an account unless `username` is None); email/username default from the number."""
    email = f"e{number}@example.com" if email == "" else email
    username = f"user{number}" if username == "" else username
    employee = Employee(
        employee_number=number,
        first_name=first_name,
        last_name=last_name,
        email=email,
        active=active,
        search_text=make_search_text(first_name, last_name, email, number, username),
    )
    session.add(employee)
    if username is not None:
        session.add(Account(employee=employee, username=username, status=status))
    session.flush()
    return employee
