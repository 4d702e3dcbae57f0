"""Rows for tests and benchmarks: employees with accounts, batches, deliveries; the audit log read back.

Every builder takes keyword arguments with defaults that make a valid, ordinary row, and commits, so
the app under test (another session, thread or process) sees it at once.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from bot.context import Context
from bot.directory import make_search_text
from bot.passwords import hash_password
from bot.sending.addresses import AddressRule, AddressSetting
from models import (
    Account,
    AccountStatus,
    AuditEvent,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    Role,
    utcnow,
)

TEMP_PASSWORD = "TempPassw0rdXyzQ"
T = TypeVar("T")


class _Default(enum.Enum):
    """Marks an argument left out, where None means "none" (no address, no account)."""

    VALUE = 0


DEFAULT = _Default.VALUE
_numbers = itertools.count(1)


def add_employee(
    session: Session,
    number: str | None = None,
    first_name: str = "Ada",
    last_name: str = "Lovelace",
    *,
    email: str | _Default | None = DEFAULT,
    username: str | _Default | None = DEFAULT,
    status: str = AccountStatus.PENDING,
    active: bool = True,
    department: str | None = None,
    directory_roles: str = "",
    password: str | None = None,
    must_change: bool = False,
    expires_in: timedelta = timedelta(hours=72),
    roles: Sequence[str] = (),
    **account_fields: Any,
) -> Employee:
    """An employee with an account (none when `username` is None), committed.

    Defaults: a fresh employee number, address `e<number>@example.com`, username `user<number>`.
    `password` is hashed into the account; with `must_change` it is a temporary one expiring in
    `expires_in`. `roles` are found or created by name.
    """
    number = f"N{next(_numbers):05d}" if number is None else number
    email = f"e{number}@example.com" if email is DEFAULT else email
    username = f"user{number}" if username is DEFAULT else username
    employee = Employee(
        employee_number=number,
        first_name=first_name,
        last_name=last_name,
        email=email,
        active=active,
        department=department,
        directory_roles=directory_roles,
        search_text=make_search_text(first_name, last_name, email, number, username),
    )
    session.add(employee)
    if username is not None:
        session.add(
            Account(
                employee=employee,
                username=username,
                status=status,
                password_hash=hash_password(password) if password else None,
                must_change_password=must_change,
                temp_password_expires_at=utcnow() + expires_in if must_change else None,
                roles=[_role(session, name) for name in roles],
                **account_fields,
            )
        )
    session.commit()
    return employee


def address_rule(
    setting: AddressSetting = "auto",
    now: datetime = datetime(2026, 12, 2, 12, 0, tzinfo=UTC),
    default_time_zone: str = "UTC",
) -> AddressRule:
    """CREDENTIAL_ADDRESS at a fixed moment (Wednesday 2 December 2026, noon UTC) for `preview`."""
    return AddressRule(setting, now, default_time_zone)


def _role(session: Session, name: str) -> Role:
    return session.scalars(sa.select(Role).where(Role.name == name)).first() or Role(name=name)


@dataclass
class Person:
    """Someone who can sign in to the portal: the ids to look them up and the password to use."""

    account_id: int
    employee_id: int
    username: str
    password: str


def add_person(
    ctx: Context,
    *,
    username: str = "adoe",
    first_name: str = "Alice",
    last_name: str = "Doe",
    email: str | None = "alice.doe@example.com",
    password: str | None = TEMP_PASSWORD,
    must_change: bool = True,
    expires_in: timedelta = timedelta(hours=72),
    status: str = AccountStatus.INVITED,
    roles: Sequence[str] = ("Employee", "Payroll"),
    **fields: Any,
) -> Person:
    """An employee whose invited account signs in with the temporary `password` (the portal's start)."""
    with ctx.sessions() as session:
        employee = add_employee(
            session,
            first_name=first_name,
            last_name=last_name,
            email=email,
            username=username,
            status=status,
            password=password,
            must_change=must_change,
            expires_in=expires_in,
            roles=roles,
            **fields,
        )
        assert employee.account is not None
        return Person(employee.account.id, employee.id, username, password or "")


def insert_employees(
    connection: Connection | Session,
    count: int,
    *,
    first: int = 0,
    name: Callable[[int], tuple[str, str]] = lambda i: ("Zoë", f"Müller{i}"),
    number: Callable[[int], str] = "E{:07d}".format,
    emails: bool = True,
    accounts: bool = True,
    chunk: int = 10_000,
) -> list[int]:
    """`count` active employees at once (executemany), for benchmarks and large lists; not committed.

    Employee i (from `first` on) is numbered `number(i)` (E0000000...), named `name(i)`, with address
    `user<i>@example.com` (unless not `emails`) and a pending account `u<i>` (unless not `accounts`).
    Returns their ids in order.
    """
    ids: list[int] = []
    for start in range(first, first + count, chunk):
        rows = []
        for i in range(start, min(start + chunk, first + count)):
            first_name, last_name = name(i)
            email = f"user{i}@example.com" if emails else None
            username = f"u{i}" if accounts else None
            rows.append(
                {
                    "employee_number": number(i),
                    "first_name": first_name,
                    "last_name": last_name,
                    "email": email,
                    "search_text": make_search_text(first_name, last_name, email, number(i), username),
                }
            )
        inserted = connection.execute(
            sa.insert(Employee).returning(Employee.id, sort_by_parameter_order=True), rows
        )
        chunk_ids = list(inserted.scalars())
        if accounts:
            account_rows = [
                {"employee_id": id_, "username": f"u{i}"} for i, id_ in enumerate(chunk_ids, start)
            ]
            connection.execute(sa.insert(Account), account_rows)
        ids += chunk_ids
    return ids


def add_employees(ctx: Context, count: int, **options: Any) -> list[int]:
    """`insert_employees` in a transaction of its own, committed; returns the ids."""
    with ctx.sessions.begin() as session:
        return insert_employees(session, count, **options)


def add_employee_rows(session: Session, count: int) -> list[Employee]:
    """`insert_employees` committed, returned as rows (in order), for tests that look at each employee."""
    ids = insert_employees(session, count)
    session.commit()
    rows = {
        employee.id: employee for employee in session.scalars(sa.select(Employee).where(Employee.id.in_(ids)))
    }
    return [rows[id_] for id_ in ids]


def add_batch(
    session: Session,
    *,
    requested_by: str = "cli:test",
    source: str = "cli",
    status: str = BatchStatus.FINISHED,
    **fields: Any,
) -> CredentialBatch:
    """A credential batch (finished unless told), committed; give it deliveries with `add_delivery`."""
    batch = CredentialBatch(requested_by=requested_by, source=source, status=status, **fields)
    session.add(batch)
    session.commit()
    return batch


def add_delivery(
    session: Session,
    batch: CredentialBatch,
    employee: Employee,
    status: str = DeliveryStatus.SENT,
    **fields: Any,
) -> Delivery:
    """The employee's delivery in the batch, to their current address, committed."""
    delivery = Delivery(
        batch_id=batch.id,
        employee_id=employee.id,
        account_id=employee.account.id if employee.account else None,
        email_address=employee.email,
        status=status,
        **fields,
    )
    session.add(delivery)
    session.commit()
    return delivery


class AuditRow(NamedTuple):
    action: str
    actor: str
    target: str | None
    details: dict[str, Any]


def audit_events(source: Session | sessionmaker[Session], action: str | None = None) -> list[AuditRow]:
    """The audit log (only `action` events when given), oldest first, as plain rows.

    `source` is a session (to see what it has not committed yet) or a session factory.
    """
    query = sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.target, AuditEvent.details)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with nullcontext(source) if isinstance(source, Session) else source() as session:
        return [AuditRow(*row) for row in session.execute(query.order_by(AuditEvent.id))]


def employee_ids(session: Session, *numbers: str) -> list[int]:
    """The ids of the employees with these numbers, in order (the services take ids; tests name people
    by number). A number nobody has raises."""
    query = sa.select(Employee.employee_number, Employee.id).where(Employee.employee_number.in_(numbers))
    found = {number: employee_id for number, employee_id in session.execute(query)}
    return [found[number] for number in numbers]


def present(value: T | None) -> T:
    """`value`, which the test expects to be there (a row, a column, a match); fails the test if None."""
    assert value is not None, "expected a value, got None"
    return value
