"""Scheduled sends: each employee's moment, and the scheduler that releases deliveries when it comes.

The database is the source of truth. A scheduled batch waits as SCHEDULED, each delivery SCHEDULED with
its moment (`due_at`, UTC). `release_due`, run by the worker's periodic tick and by a wake queued for the
next moment (`bot.sending.jobs.release_scheduled`), makes the due ones pending and queues the batch's job
in the same transaction (the outbox): a flushed or restarted Redis loses nothing, the next tick finds
them. The send is then the usual one (`bot.sending.sender`): passwords and links are made at that moment
and expire from it, and the confirmation's snapshot is checked then (address, leaver, disabled account,
a send by another batch). Nothing secret is stored ahead, and nothing is handed to SendGrid to send
later. Once a moment's deliveries ended, a batch with more moments to come waits again (`park`).

Lock order: the batch row, then its deliveries (`release_due`, `park`, `cancel`), so a batch is never
parked or ended while deliveries are being released.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.audit import AuditAction, batch_target, employee_target, record, record_many
from bot.chunks import chunks
from bot.settings import Settings
from bot.time_zones import canonical_time_zone, local_moment
from models import BatchStatus, CredentialBatch, Delivery, DeliveryStatus, Employee, rowcount, utcnow

_BATCHES = CredentialBatch.__table__
_DELIVERIES = Delivery.__table__
_EMPLOYEES = Employee.__table__

NO_START_DATE = "cannot be scheduled: no start date"
CANCELLED = "cancelled before it was sent"
LEFT = "cancelled: the employee left"
_WAITING = (DeliveryStatus.SCHEDULED, DeliveryStatus.PENDING)
"""What a cancel stops: deliveries no runner has claimed."""


class When(enum.StrEnum):
    NOW = "now"
    START_DATE = "start_date"
    AT = "at"


@dataclass(frozen=True)
class Schedule:
    """When the admin chose to send: on each employee's start date at a local time, or at one date and
    time (in a chosen zone, or in each employee's own when `zone` is None)."""

    when: When
    at: time
    day: date | None = None
    zone: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "when": str(self.when),
            "at": f"{self.at:%H:%M}",
            "day": self.day.isoformat() if self.day else None,
            "zone": self.zone,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        day = data.get("day")
        return cls(
            When(data["when"]),
            parse_time(data["at"]),
            date.fromisoformat(day) if day else None,
            data.get("zone"),
        )

    def describe(self) -> str:
        """E.g. "on their start dates at 08:00 in their time zones"."""
        where = f"({self.zone})" if self.zone else "in their time zones"
        if self.when == When.START_DATE:
            return f"on their start dates at {self.at:%H:%M} {where}"
        assert self.day is not None
        return f"on {self.day:%a %-d %b %Y} at {self.at:%H:%M} {where}"


def parse_time(text: str) -> time:
    """A local time as HH:MM (ValueError otherwise)."""
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text.strip()):
        raise ValueError(f"{text!r} is not a time as HH:MM (e.g. 08:00)")
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


def parse_at(text: str) -> tuple[date, time]:
    """A date and local time as "YYYY-MM-DD HH:MM" (ValueError otherwise)."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not a date and time as YYYY-MM-DD HH:MM")
    try:
        day = date.fromisoformat(parts[0])
    except ValueError:
        raise ValueError(f"{parts[0]!r} is not a date as YYYY-MM-DD") from None
    return day, parse_time(parts[1])


def parse_zone(text: str) -> str:
    """An IANA zone name as the database spells it (ValueError otherwise)."""
    zone = canonical_time_zone(text)
    if zone is None:
        raise ValueError(f"{text!r} is not an IANA time zone, e.g. Europe/London")
    return zone


@dataclass(frozen=True)
class Moment:
    """One employee's moment: when (UTC; None: cannot be scheduled), in which zone, and a note when it is
    not what the schedule said (a moment past is now; no start date)."""

    due_at: datetime | None
    zone: str
    note: str | None = None

    def local(self) -> str:
        """E.g. "Mon 7 Dec 08:00 GMT" (the zone's abbreviation, or its offset)."""
        return local_text(self.due_at, self.zone) if self.due_at else ""


def local_text(moment: datetime, zone: str) -> str:
    """`moment` on the wall clock of `zone`, e.g. "Mon 7 Dec 08:00 GMT" or "Mon 7 Dec 08:00 +0545"."""
    local = moment.astimezone(ZoneInfo(zone))
    name = local.tzname() or ""
    if not name or name[0] in "+-":  # zones without an abbreviation give their offset
        name = local.strftime("%z")
    return f"{local:%a %-d %b %H:%M} {name}"


def moments(
    session: Session, settings: Settings, schedule: Schedule, employee_ids: Sequence[int], now: datetime
) -> dict[int, Moment]:
    """Each employee's moment under `schedule` (by employee id). A moment already past is `now`, with a
    note; under "on their start date", an employee without one cannot be scheduled (NO_START_DATE)."""
    found: dict[int, Moment] = {}
    for chunk in chunks(list(employee_ids)):
        rows = session.execute(
            select(_EMPLOYEES.c.id, _EMPLOYEES.c.start_date, _EMPLOYEES.c.time_zone).where(
                _EMPLOYEES.c.id.in_(chunk)
            )
        )
        for employee_id, start_date, own_zone in rows:
            zone = schedule.zone or own_zone or settings.default_time_zone
            day = start_date if schedule.when == When.START_DATE else schedule.day
            if day is None:
                found[employee_id] = Moment(None, zone, NO_START_DATE)
                continue
            due = local_moment(day, schedule.at, zone)
            if due <= now:
                note = f"{local_text(due, zone)} has passed: sent at once"
                found[employee_id] = Moment(now, zone, note)
            else:
                found[employee_id] = Moment(due, zone)
    return found


def summary_line(schedule: Schedule, planned: Mapping[int, Moment]) -> str:
    """The channel's line for a scheduled batch, e.g. "23 employees, on their start dates at 08:00 in their
    time zones; first Mon 7 Dec 08:00 GMT"."""
    scheduled = [m for m in planned.values() if m.due_at is not None]
    count = f"{len(scheduled):,} employee{'s' if len(scheduled) != 1 else ''}"
    if not scheduled:
        return f"{count}, {schedule.describe()}"
    first = min(scheduled, key=lambda m: (m.due_at, m.zone))
    return f"{count}, {schedule.describe()}; first {first.local()}"


@dataclass(frozen=True)
class MomentGroup:
    """Employees sharing one moment in one zone: how the confirmation summarises thousands."""

    due_at: datetime
    zone: str
    count: int

    def local(self) -> str:
        return local_text(self.due_at, self.zone)


def moment_groups(planned: Iterable[Moment]) -> list[MomentGroup]:
    """The moments by (moment, zone), earliest first, with how many employees each."""
    counts: dict[tuple[datetime, str], int] = {}
    for moment in planned:
        if moment.due_at is not None:
            counts[(moment.due_at, moment.zone)] = counts.get((moment.due_at, moment.zone), 0) + 1
    return [MomentGroup(due, zone, count) for (due, zone), count in sorted(counts.items())]


# The scheduler -----------------------------------------------------------------------------------------


def release_due(session: Session, now: datetime) -> list[tuple[int, str]]:
    """Make the deliveries due at `now` pending and their batches running, in the caller's transaction
    (the caller queues each batch's job in it): (id, source) of each batch released. Once across
    processes: a delivery is released by the one transaction that moves it from SCHEDULED."""
    due = list(
        session.scalars(
            select(_DELIVERIES.c.batch_id)
            .where(_DELIVERIES.c.status == DeliveryStatus.SCHEDULED, _DELIVERIES.c.due_at <= now)
            .distinct()
        )
    )
    released = []
    for batch_id in sorted(due):
        source = session.scalar(select(_BATCHES.c.source).where(_BATCHES.c.id == batch_id).with_for_update())
        moved = session.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.batch_id == batch_id,
                _DELIVERIES.c.status == DeliveryStatus.SCHEDULED,
                _DELIVERIES.c.due_at <= now,
            )
            .values(status=DeliveryStatus.PENDING, updated_at=utcnow())
        )
        if rowcount(moved) and source is not None:
            session.execute(
                update(_BATCHES)
                .where(
                    _BATCHES.c.id == batch_id,
                    _BATCHES.c.status.in_([BatchStatus.SCHEDULED, BatchStatus.RUNNING]),
                )
                .values(status=BatchStatus.RUNNING, heartbeat_at=utcnow())
            )
            released.append((batch_id, source))
    return released


def moments_between(session: Session, after: datetime, until: datetime, most: int = 50) -> list[datetime]:
    """The distinct moments still waiting in (`after`, `until`], earliest first (at most `most`)."""
    return list(
        session.scalars(
            select(_DELIVERIES.c.due_at)
            .where(
                _DELIVERIES.c.status == DeliveryStatus.SCHEDULED,
                _DELIVERIES.c.due_at > after,
                _DELIVERIES.c.due_at <= until,
            )
            .distinct()
            .order_by(_DELIVERIES.c.due_at)
            .limit(most)
        )
    )


def park(session: Session, batch_id: int) -> bool:
    """Where a running batch would end: if deliveries of it still wait for their moment (and none is
    pending or in flight), it waits again as SCHEDULED; True if it does not end now. In the caller's
    transaction."""
    session.execute(select(_BATCHES.c.id).where(_BATCHES.c.id == batch_id).with_for_update())
    counts = _counts(session, batch_id)
    if counts.get(DeliveryStatus.PENDING, 0) or counts.get(DeliveryStatus.SENDING, 0):
        return True  # released meanwhile: the job queued with them runs them
    if not counts.get(DeliveryStatus.SCHEDULED, 0):
        return False
    session.execute(
        update(_BATCHES)
        .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
        .values(status=BatchStatus.SCHEDULED, heartbeat_at=None)
    )
    return True


def _counts(session: Session, batch_id: int) -> dict[str, int]:
    return dict(
        session.execute(
            select(_DELIVERIES.c.status, func.count())
            .where(_DELIVERIES.c.batch_id == batch_id)
            .group_by(_DELIVERIES.c.status)
        ).all()
    )


# Cancelling --------------------------------------------------------------------------------------------


def cancel(session: Session, batch_id: int, actor: str) -> int:
    """Cancel what of a batch is not yet sent (waiting for its moment, or pending): SKIPPED with CANCELLED;
    how many. A batch running now stops (its runners claim nobody more); one waiting ends. Audited, in
    the caller's transaction. LookupError: no such batch."""
    status = session.scalar(select(_BATCHES.c.status).where(_BATCHES.c.id == batch_id).with_for_update())
    if status is None:
        raise LookupError(f"no credential batch {batch_id}")
    # The stop reason first, whatever status was read: a waiting batch whose moment comes meanwhile (the
    # scheduler makes it running; SQLite takes no lock on the read above) then still ends as cancelled.
    session.execute(
        update(_BATCHES)
        .where(
            _BATCHES.c.id == batch_id,
            _BATCHES.c.stop_reason.is_(None),
            _BATCHES.c.status.in_([BatchStatus.RUNNING, BatchStatus.SCHEDULED]),
        )
        .values(stop_reason=CANCELLED)
    )
    cancelled = _skip(session, _DELIVERIES.c.batch_id == batch_id, _WAITING, CANCELLED, actor)
    if status == BatchStatus.SCHEDULED:
        _end(session, batch_id, actor, BatchStatus.ABORTED, CANCELLED)
    if cancelled or status in (BatchStatus.RUNNING, BatchStatus.SCHEDULED):
        record(session, actor, AuditAction.BATCH_CANCELLED, batch_target(batch_id), cancelled=cancelled)
    return cancelled


def cancel_for_leavers(session: Session, actor: str, employee_numbers: Sequence[str]) -> int:
    """Cancel the scheduled sends of employees who left (SKIPPED with LEFT); how many. A waiting batch
    left with nothing to send ends. In the caller's transaction."""
    batch_ids: set[int] = set()
    cancelled = 0
    for chunk in chunks(list(employee_numbers)):
        of_leavers = _DELIVERIES.c.employee_id.in_(
            select(_EMPLOYEES.c.id).where(_EMPLOYEES.c.employee_number.in_(chunk)).scalar_subquery()
        )
        batch_ids.update(
            session.scalars(
                select(_DELIVERIES.c.batch_id).where(
                    of_leavers, _DELIVERIES.c.status == DeliveryStatus.SCHEDULED
                )
            )
        )
        cancelled += _skip(session, of_leavers, (DeliveryStatus.SCHEDULED,), LEFT, actor)
    for batch_id in sorted(batch_ids):
        status = session.scalar(select(_BATCHES.c.status).where(_BATCHES.c.id == batch_id).with_for_update())
        counts = _counts(session, batch_id)
        waiting = sum(counts.get(s, 0) for s in (*_WAITING, DeliveryStatus.SENDING))
        if status == BatchStatus.SCHEDULED and not waiting:
            _end(session, batch_id, actor, BatchStatus.FINISHED, None)
    return cancelled


def _skip(session: Session, which: Any, statuses: Sequence[DeliveryStatus], reason: str, actor: str) -> int:
    """Skip the deliveries `which` in `statuses` with `reason`, each audited; how many."""
    rows = session.execute(
        select(_DELIVERIES.c.id, _DELIVERIES.c.batch_id, _EMPLOYEES.c.employee_number)
        .join(_EMPLOYEES, _EMPLOYEES.c.id == _DELIVERIES.c.employee_id)
        .where(which, _DELIVERIES.c.status.in_(statuses))
    ).all()
    skipped = 0
    for chunk in chunks(rows):
        skipped += rowcount(
            session.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id.in_([row[0] for row in chunk]), _DELIVERIES.c.status.in_(statuses))
                .values(status=DeliveryStatus.SKIPPED, error=reason, lease_until=None, updated_at=utcnow())
            )
        )
        record_many(
            session,
            actor,
            [
                (
                    AuditAction.CREDENTIALS_SKIPPED,
                    employee_target(number),
                    {"batch_id": batch_id, "delivery_id": delivery_id, "reason": reason},
                )
                for delivery_id, batch_id, number in chunk
            ],
        )
    return skipped


def _end(session: Session, batch_id: int, actor: str, status: BatchStatus, reason: str | None) -> None:
    """End a waiting batch with nothing left to send, with its audit event."""
    session.execute(
        update(_BATCHES)
        .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.SCHEDULED)
        .values(status=status, error=reason, finished_at=utcnow(), heartbeat_at=None)
    )
    counts = _counts(session, batch_id)
    details = {
        str(s): counts.get(s, 0) for s in DeliveryStatus if s not in _WAITING and s != DeliveryStatus.SENDING
    }
    action = AuditAction.BATCH_ABORTED if reason else AuditAction.BATCH_FINISHED
    record(session, actor, action, batch_target(batch_id), error=reason, **details)


# What waits --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A batch's deliveries still waiting for their moment: how many, and the next moment."""

    count: int
    next_at: datetime


def waiting(session: Session, batch_ids: Sequence[int]) -> dict[int, Waiting]:
    """What waits in each of the batches (those with nothing waiting are left out)."""
    found: dict[int, Waiting] = {}
    for chunk in chunks(list(batch_ids)):
        rows = session.execute(
            select(_DELIVERIES.c.batch_id, func.count(), func.min(_DELIVERIES.c.due_at))
            .where(_DELIVERIES.c.batch_id.in_(chunk), _DELIVERIES.c.status == DeliveryStatus.SCHEDULED)
            .group_by(_DELIVERIES.c.batch_id)
        )
        found.update((batch_id, Waiting(count, next_at)) for batch_id, count, next_at in rows)
    return found


@dataclass(frozen=True)
class ScheduledBatch:
    """A batch with deliveries waiting (App Home's Scheduled section)."""

    batch_id: int
    requested_by: str
    schedule: Schedule | None
    waiting: Waiting


def scheduled_batches(session: Session, limit: int = 10) -> list[ScheduledBatch]:
    """Batches with deliveries waiting for their moment, the next moment first."""
    rows = session.execute(
        select(_BATCHES.c.id, _BATCHES.c.requested_by, _BATCHES.c.schedule).where(
            _BATCHES.c.status.in_([BatchStatus.SCHEDULED, BatchStatus.RUNNING]),
            _BATCHES.c.schedule.is_not(None),
        )
    ).all()
    found = waiting(session, [row[0] for row in rows])
    batches = [
        ScheduledBatch(batch_id, by, Schedule.from_json(plan) if plan else None, found[batch_id])
        for batch_id, by, plan in rows
        if batch_id in found
    ]
    return sorted(batches, key=lambda b: (b.waiting.next_at, b.batch_id))[:limit]
