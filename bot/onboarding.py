"""Where onboarding stands: who needs an account, an email, a sign-in, an unlock; the activation funnel.

Every list App Home, the digest and "show all" show is one `Stage`, defined once here as a SQL
condition over employees joined to their account, so that counts, pages and actions always agree.

The funnel per account: emailed (`credentials_emailed_at`) -> first sign-in (`first_sign_in_at`) ->
password changed (`password_changed_at`). An emailed credential's deadline is the temporary password's
expiry, or in link mode the expiry of the newest unused set-password link.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVarTuple, assert_never

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from bot.accounts import status_column
from bot.directory import name_order
from bot.reports import BatchLine, recent_batches
from bot.sending.recipients import never_emailed
from bot.sending.schedule import ScheduledBatch, scheduled_batches
from models import Account, AccountStatus, Employee, SetupLink, full_name, utcnow

EXPIRING_WITHIN = timedelta(hours=24)
SAMPLE_SIZE = 5
_Ts = TypeVarTuple("_Ts")
"""People named per line on App Home; "show all" pages through the rest."""


class Stage(enum.StrEnum):
    NO_ACCOUNT = "no_account"
    NEVER_EMAILED = "never_emailed"
    AWAITING_SIGN_IN = "awaiting_sign_in"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    LOCKED = "locked"
    DISABLED = "disabled"


STAGE_TITLES = {
    Stage.NO_ACCOUNT: "Employees without an account",
    Stage.NEVER_EMAILED: "Accounts never emailed",
    Stage.AWAITING_SIGN_IN: "Emailed, not signed in yet",
    Stage.EXPIRING: "Expiring within 24 hours",
    Stage.EXPIRED: "Expired unused",
    Stage.LOCKED: "Locked accounts",
    Stage.DISABLED: "Disabled accounts",
}


def credential_deadline() -> ColumnElement[datetime | None]:
    """When the emailed credential stops working: the temporary password's expiry, else the newest
    sent, unused set-password link's."""
    newest_link = (
        select(func.max(SetupLink.expires_at))
        .where(
            SetupLink.account_id == Account.id,
            SetupLink.sent_at.is_not(None),
            SetupLink.used_at.is_(None),
            SetupLink.revoked_at.is_(None),
        )
        .scalar_subquery()
    )
    return case((Account.must_change_password.is_(True), Account.temp_password_expires_at), else_=newest_link)


def stage_clause(stage: Stage, now: datetime) -> ColumnElement[bool]:
    """The condition over `employees LEFT JOIN accounts` for one stage."""
    active = Employee.active.is_(True)
    usable = and_(active, Account.id.is_not(None), Account.status != AccountStatus.DISABLED)
    unused = and_(
        usable,
        Account.credentials_emailed_at.is_not(None),
        Account.first_sign_in_at.is_(None),
        Account.password_changed_at.is_(None),
    )
    deadline = credential_deadline()
    if stage == Stage.NO_ACCOUNT:
        return and_(active, Account.id.is_(None))
    if stage == Stage.NEVER_EMAILED:
        return never_emailed()
    if stage == Stage.AWAITING_SIGN_IN:
        return and_(unused, or_(deadline.is_(None), deadline > now))
    if stage == Stage.EXPIRING:
        return and_(unused, deadline > now, deadline <= now + EXPIRING_WITHIN)
    if stage == Stage.EXPIRED:
        return and_(unused, deadline <= now)
    if stage == Stage.LOCKED:
        return and_(Account.id.is_not(None), status_column(now) == AccountStatus.LOCKED)
    if stage == Stage.DISABLED:
        return Account.status == AccountStatus.DISABLED
    assert_never(stage)


def _base(query: Select[*_Ts]) -> Select[*_Ts]:
    return query.select_from(Employee).outerjoin(Account, Account.employee_id == Employee.id)


@dataclass(frozen=True)
class Person:
    """One line of a stage's list."""

    employee_id: int
    employee_number: str
    name: str
    account_id: int | None
    username: str | None
    deadline: datetime | None
    """When their emailed credential stops working (None: not emailed, or no deadline)."""
    locked_until: datetime | None


def _in_order(session: Session, query: Select[*_Ts], stage: Stage) -> Select[*_Ts]:
    """A stage's list order: soonest deadline first for the emailed stages, else by name."""
    by_name = name_order(session)
    if stage in (Stage.EXPIRING, Stage.EXPIRED, Stage.AWAITING_SIGN_IN):
        return query.order_by(credential_deadline(), *by_name)
    return query.order_by(*by_name)


def _people(
    session: Session,
    stage: Stage,
    now: datetime,
    offset: int,
    limit: int | None,
    since: datetime | None = None,
) -> list[Person]:
    deadline = credential_deadline()
    query = _base(
        select(
            Employee.id,
            Employee.employee_number,
            Employee.first_name,
            Employee.last_name,
            Account.id,
            Account.username,
            deadline,
            Account.locked_until,
        )
    ).where(stage_clause(stage, now))
    if since is not None:
        query = query.where(deadline > since)
    rows = session.execute(_in_order(session, query, stage).offset(offset).limit(limit))
    return [
        Person(eid, number, full_name(first, last), account_id, username, due, locked)
        for eid, number, first, last, account_id, username, due, locked in rows
    ]


def stage_page(
    session: Session, stage: Stage, page: int, size: int, now: datetime | None = None
) -> list[Person]:
    """Page `page` (from 0) of a stage's list, `size` people per page."""
    return _people(session, stage, now or utcnow(), page * size, size)


def expired_since(session: Session, since: datetime, now: datetime, limit: int) -> list[Person]:
    """Who saw their emailed credential expire unused between `since` and `now`."""
    return _people(session, Stage.EXPIRED, now, 0, limit, since=since)


def stage_employee_ids(session: Session, stage: Stage, now: datetime | None = None) -> list[int]:
    """Every employee in a stage, in the list's order."""
    query = _base(select(Employee.id)).where(stage_clause(stage, now or utcnow()))
    return list(session.scalars(_in_order(session, query, stage)))


def stage_count(session: Session, stage: Stage, now: datetime | None = None) -> int:
    return session.scalar(_base(select(func.count())).where(stage_clause(stage, now or utcnow()))) or 0


@dataclass(frozen=True)
class Funnel:
    """Accounts of active employees at each step."""

    accounts: int
    emailed: int
    signed_in: int
    password_changed: int


@dataclass(frozen=True)
class Desk:
    """Everything App Home shows: per stage its count and first few people, the funnel, recent batches."""

    at: datetime
    employees: int
    counts: dict[Stage, int]
    samples: dict[Stage, list[Person]]
    funnel: Funnel
    batches: list[BatchLine]
    scheduled: list[ScheduledBatch] = field(default_factory=list)
    """Batches with deliveries waiting for their moment (App Home's Scheduled section)."""


def desk(session: Session, now: datetime | None = None, batches: int = 5) -> Desk:
    """The state of onboarding: all counts in one pass over the directory, then a few names per stage."""
    now = now or utcnow()
    active_account = and_(Employee.active.is_(True), Account.id.is_not(None))
    columns: list[ColumnElement[int]] = [func.count().filter(stage_clause(stage, now)) for stage in Stage]
    columns += [
        func.count(),
        func.count().filter(active_account),
        func.count().filter(active_account, Account.credentials_emailed_at.is_not(None)),
        func.count().filter(
            active_account,
            or_(Account.first_sign_in_at.is_not(None), Account.password_changed_at.is_not(None)),
        ),
        func.count().filter(active_account, Account.password_changed_at.is_not(None)),
    ]
    row = session.execute(_base(select(*columns))).one()
    counts = {stage: row[i] or 0 for i, stage in enumerate(Stage)}
    employees, accounts, emailed, signed_in, changed = (value or 0 for value in row[len(Stage) :])
    samples = {
        stage: _people(session, stage, now, 0, SAMPLE_SIZE) if counts[stage] else [] for stage in Stage
    }
    return Desk(
        at=now,
        employees=employees,
        counts=counts,
        samples=samples,
        funnel=Funnel(accounts, emailed, signed_in, changed),
        batches=recent_batches(session, batches),
        scheduled=scheduled_batches(session, batches),
    )
