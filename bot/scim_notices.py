"""New hires and leavers from the identity provider, grouped so the audit channel hears of them once a
minute at most, whatever the provisioning rate (an Okta import sends thousands of users in a minute).

SCIM writes one audit event per change (actor `scim:NAME`, target the employee, details `employee_id`).
The periodic job `group_scim_notices` reads the events of created and deactivated users after a mark kept
in the database; once changes have waited GROUP_WINDOW on the context's clock, it groups them all into
one `ScimNotice`. Hires are named only while they still need credentials. handlers.scim_notices posts the
notices, and their buttons open the usual confirmation: nobody is emailed without an admin.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot import jobs
from bot.audit import AuditAction
from bot.chunks import chunks
from bot.context import Context
from bot.directory import name_order
from bot.sending.recipients import never_emailed
from models import (
    Account,
    AuditEvent,
    Employee,
    NoticeChange,
    ScimNotice,
    ScimNoticeMark,
    ScimNoticePerson,
    full_name,
)

log = logging.getLogger(__name__)

GROUP_WINDOW = timedelta(minutes=1)
"""How long changes wait to be grouped; also the least time between two notices."""
GROUP_EVERY_SECONDS = 10
MAX_EVENTS = 10_000
"""Events one notice takes at most; the rest go into the next one, a minute later."""
STALE_AFTER = timedelta(days=1)
"""A notice not posted by then (no AUDIT_CHANNEL_ID, Slack away) is no longer posted; App Home lists
whoever still needs credentials."""
SCIM_ACTOR = "scim:"
_MARK = "scim_notices"
_PEOPLE = ScimNoticePerson.__table__
_CHANGES = {
    str(AuditAction.SCIM_USER_CREATED): NoticeChange.HIRED,
    str(AuditAction.SCIM_USER_DEACTIVATED): NoticeChange.LEFT,
}


def token_name(actor: str) -> str:
    """The SCIM token's name in an actor `scim:NAME` (as its owner typed it: outside text)."""
    return actor.removeprefix(SCIM_ACTOR)


def needs_credentials() -> ColumnElement[bool]:
    """Over `employees LEFT JOIN accounts`: active and never emailed credentials (no account yet, or a
    usable account never emailed)."""
    return or_(never_emailed(), and_(Employee.active.is_(True), Account.id.is_(None)))


# --- grouping -------------------------------------------------------------------------------------------


def group_notices(sessions: sessionmaker[Session], now: datetime) -> int | None:
    """Group the SCIM changes that have waited GROUP_WINDOW into a notice: its id, or None (nothing due,
    or nobody left to name). One grouper at a time: the mark's row is locked first."""
    with sessions.begin() as session:
        mark = _locked_mark(session)
        waiting = session.scalar(_events_after(mark.seq).with_only_columns(AuditEvent.seq).limit(1))
        if waiting is None:
            mark.waiting_since = None
            return None
        if mark.waiting_since is None:
            mark.waiting_since = now
            return None
        if now - mark.waiting_since < GROUP_WINDOW:
            return None
        events = session.execute(_events_after(mark.seq).limit(MAX_EVENTS)).all()
        mark.seq, mark.waiting_since = events[-1].seq, None
        people = _named(session, events)
        if not people:
            return None
        notice = ScimNotice(grouped_at=now)
        session.add(notice)
        session.flush()
        session.execute(  # the table's, as bot.audit's record_many: one executemany, no ORM objects
            insert(_PEOPLE),
            [
                {"notice_id": notice.id, "employee_id": eid, "change": str(change), "actor": actor}
                for (eid, change), actor in people.items()
            ],
        )
        log.info("SCIM notice %d groups %d changes", notice.id, len(people))
        return notice.id


def _locked_mark(session: Session) -> ScimNoticeMark:
    """The mark's row, created if missing, locked for this transaction (PostgreSQL: the row; SQLite: the
    insert takes the database's writer lock)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(ScimNoticeMark).values(name=_MARK, seq=0).on_conflict_do_nothing())
    query = select(ScimNoticeMark).where(ScimNoticeMark.name == _MARK).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one()


def _events_after(seq: int) -> Any:
    """Created and deactivated users after chain position `seq`, in chain order (sealed events only: the
    chain orders them as they were committed)."""
    return (
        select(AuditEvent.seq, AuditEvent.action, AuditEvent.actor, AuditEvent.details)
        .where(AuditEvent.seq > seq, AuditEvent.action.in_(list(_CHANGES)))
        .order_by(AuditEvent.seq)
    )


def _named(session: Session, events: Sequence[Row[Any]]) -> dict[tuple[int, NoticeChange], str]:
    """{(employee id, change): actor} for the events' employees who exist, hires only while they still
    need credentials."""
    people: dict[tuple[int, NoticeChange], str] = {}
    for event in events:
        employee_id = (event.details or {}).get("employee_id")
        if isinstance(employee_id, int) and not isinstance(employee_id, bool):
            people.setdefault((employee_id, _CHANGES[event.action]), event.actor)
    hired = [eid for eid, change in people if change == NoticeChange.HIRED]
    left = [eid for eid, change in people if change == NoticeChange.LEFT]
    keep = {(eid, NoticeChange.HIRED) for eid in _existing(session, hired, needs_credentials())}
    keep |= {(eid, NoticeChange.LEFT) for eid in _existing(session, left, None)}
    return {key: actor for key, actor in people.items() if key in keep}


def _existing(session: Session, employee_ids: list[int], condition: ColumnElement[bool] | None) -> set[int]:
    found: set[int] = set()
    for chunk in chunks(employee_ids):
        query = _with_account(select(Employee.id)).where(Employee.id.in_(chunk))
        found.update(session.scalars(query if condition is None else query.where(condition)))
    return found


def _with_account(query: Any) -> Any:
    return query.select_from(Employee).outerjoin(Account, Account.employee_id == Employee.id)


@jobs.every(GROUP_EVERY_SECONDS)
@jobs.job(max_retries=0)
def group_scim_notices(ctx: Context) -> None:
    """The periodic job: group what SCIM changed (the next run tries again if this one fails)."""
    group_notices(ctx.sessions, ctx.clock.now())


# --- reading notices back ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticePerson:
    employee_id: int
    employee_number: str
    name: str
    start_date: date | None
    change: NoticeChange
    token: str
    """The SCIM token's name (outside text: make it inert before showing it)."""


@dataclass(frozen=True)
class Notice:
    notice_id: int
    grouped_at: datetime
    people: list[NoticePerson]
    """Hires by start date, then leavers; each by name."""

    def of(self, change: NoticeChange) -> list[NoticePerson]:
        return [person for person in self.people if person.change == change]


def _people_query(session: Session) -> Any:
    return (
        select(
            Employee.id,
            Employee.employee_number,
            Employee.first_name,
            Employee.last_name,
            Employee.start_date,
            ScimNoticePerson.change,
            ScimNoticePerson.actor,
        )
        .join(ScimNoticePerson, ScimNoticePerson.employee_id == Employee.id)
        .order_by(
            ScimNoticePerson.change, Employee.start_date.is_(None), Employee.start_date, *name_order(session)
        )
    )


def _person(row: Row[Any]) -> NoticePerson:
    eid, number, first, last, start, change, actor = tuple(row)
    return NoticePerson(eid, number, full_name(first, last), start, NoticeChange(change), token_name(actor))


def notices_to_post(session: Session, now: datetime, limit: int) -> list[Notice]:
    """The oldest `limit` notices not posted yet (those not stale), with everyone they name."""
    query = (
        select(ScimNotice)
        .where(ScimNotice.ts.is_(None), ScimNotice.grouped_at > now - STALE_AFTER)
        .order_by(ScimNotice.id)
        .limit(limit)
    )
    notices = []
    for notice in session.scalars(query):
        rows = session.execute(_people_query(session).where(ScimNoticePerson.notice_id == notice.id))
        notices.append(Notice(notice.id, notice.grouped_at, [_person(row) for row in rows]))
    return notices


def notice_posted(sessions: sessionmaker[Session], notice_id: int, channel: str, ts: str) -> None:
    with sessions.begin() as session:
        session.execute(update(ScimNotice).where(ScimNotice.id == notice_id).values(channel=channel, ts=ts))


def _waiting_hires(session: Session, notice_id: int | None) -> Any:
    hires = select(ScimNoticePerson.employee_id).where(ScimNoticePerson.change == NoticeChange.HIRED)
    if notice_id is not None:
        hires = hires.where(ScimNoticePerson.notice_id == notice_id)
    return _with_account(select(Employee.id)).where(Employee.id.in_(hires), needs_credentials())


def hires_to_confirm(session: Session, notice_id: int | None = None, limit: int | None = None) -> list[int]:
    """The hires of a notice (None: of every notice) who still need credentials, by start date and name:
    whom the notice's buttons put in the confirmation."""
    query = _waiting_hires(session, notice_id).order_by(
        Employee.start_date.is_(None), Employee.start_date, *name_order(session)
    )
    return list(session.scalars(query.limit(limit)))


@dataclass(frozen=True)
class WaitingHires:
    """For App Home: SCIM's hires who still need credentials, how many, and the first few."""

    count: int
    first: list[NoticePerson]


def waiting_hires(session: Session, listed: int) -> WaitingHires:
    """The count and the first `listed` (by start date and name) in one pass over the directory, as App
    Home is published often."""
    hired = (
        select(ScimNoticePerson.employee_id, func.min(ScimNoticePerson.actor).label("actor"))
        .where(ScimNoticePerson.change == NoticeChange.HIRED)
        .group_by(ScimNoticePerson.employee_id)
        .subquery()
    )
    columns = (Employee.id, Employee.employee_number, Employee.first_name, Employee.last_name)
    query = (
        _with_account(select(*columns, Employee.start_date, hired.c.actor, func.count().over()))
        .join(hired, hired.c.employee_id == Employee.id)
        .where(needs_credentials())
        .order_by(Employee.start_date.is_(None), Employee.start_date, *name_order(session))
        .limit(listed)
    )
    rows = session.execute(query).all()
    first = [
        NoticePerson(eid, number, full_name(first, last), start, NoticeChange.HIRED, token_name(actor))
        for eid, number, first, last, start, actor, _ in rows
    ]
    return WaitingHires(rows[0][-1] if rows else 0, first)
