"""Credential batches: starting one with the addresses the admin confirmed, counting, listing, summaries."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit import AuditAction, batch_target, employee_target, record, record_many
from bot.chunks import chunks
from bot.context import Context
from bot.sending.addresses import AddressRule, still_theirs
from bot.sending.outcomes import ADDRESS_CHANGED
from bot.sending.recipients import recipients_with_accounts
from bot.sending.schedule import NO_START_DATE
from models import (
    Account,
    BatchSource,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    full_name,
    utcnow,
)

_DELIVERIES = Delivery.__table__


class DuplicateBatchError(Exception):
    """A batch with this idempotency key exists already."""

    def __init__(self, batch_id: int) -> None:
        super().__init__(f"credential batch {batch_id} was already started with this idempotency key")
        self.batch_id = batch_id


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: int
    employee_number: str
    name: str
    username: str | None
    address: str | None
    status: DeliveryStatus
    error: str | None


@dataclass(frozen=True)
class BatchSummary:
    batch_id: int
    status: BatchStatus
    sent: list[DeliveryOutcome]
    failed: list[DeliveryOutcome]
    skipped: list[DeliveryOutcome]
    error: str | None
    """Batch-level error, e.g. the mail API refused the API key."""
    in_doubt: list[DeliveryOutcome] = field(default_factory=list)
    """The mail API may have accepted the welcome email (timeout, connection lost, 5xx)."""
    unfinished: int = 0
    """Deliveries still pending or in flight (the batch is still running elsewhere)."""


def start_batch(
    ctx: Context,
    employee_ids: Sequence[int],
    actor: str,
    source: BatchSource,
    channel_id: str | None = None,
    idempotency_key: str | None = None,
    confirmed: Mapping[int, str | None] | None = None,
    confirmed_emailed: Mapping[int, datetime | None] | None = None,
    enqueue: Callable[[Session, int], None] | None = None,
    bypass_bounce_list: Collection[int] = (),
    due_at: Mapping[int, datetime | None] | None = None,
    schedule: Mapping[str, Any] | None = None,
) -> int:
    """Commit a batch and one delivery per employee (unmailable ones SKIPPED with the reason); its id.

    What the admin confirmed is a snapshot kept with each delivery and checked again at send time:
    `confirmed`, the address they were shown per employee id (an employee whose address is different
    now is skipped with ADDRESS_CHANGED); `confirmed_emailed`, when they were shown the employee was
    last emailed (None: never; without the mapping, as the batch starts). An employee emailed by
    another batch since is skipped at send time with EMAILED_SINCE.

    `enqueue(session, batch_id)` runs in the batch's transaction: the job that runs it is committed
    with it (the outbox, `bot.outbox`).

    `bypass_bounce_list`: employee ids whose address the admin confirmed while shown on SendGrid's bounce
    list; their emails bypass it.

    `due_at`, for a scheduled batch (`bot.sending.schedule`): each employee's moment (None: they cannot be
    scheduled, SKIPPED with NO_START_DATE); the batch waits as SCHEDULED with `schedule`, what the admin
    chose, and `enqueue` wakes the scheduler instead of running it.
    """
    try:
        with ctx.sessions.begin() as session:
            if idempotency_key:
                existing = batch_with_key(session, idempotency_key)
                if existing is not None:
                    raise DuplicateBatchError(existing)
            batch = CredentialBatch(
                requested_by=actor,
                source=source,
                channel_id=channel_id,
                idempotency_key=idempotency_key,
                mode=ctx.settings.credential_mode,
                status=BatchStatus.RUNNING if due_at is None else BatchStatus.SCHEDULED,
                heartbeat_at=utcnow() if due_at is None else None,
                schedule=dict(schedule) if schedule is not None else None,
            )
            session.add(batch)
            session.flush()
            batch_id, mode = batch.id, batch.mode
            rule = AddressRule.of(ctx.settings, ctx.clock.now())
            employees = skipped = 0
            # In chunks: each chunk's employees are read, its deliveries inserted as plain rows, and the
            # employees let go, so memory stays flat however many employees.
            for chunk in chunks(list(dict.fromkeys(employee_ids))):
                rows, skips = [], []
                for recipient, account_id in recipients_with_accounts(session, chunk, rule):
                    employees += 1
                    address, problem = recipient.address, recipient.problem
                    if confirmed is not None and problem is None:
                        shown = confirmed.get(recipient.employee_id)
                        # The admin may have switched them to their other address: any of theirs holds.
                        address = shown
                        if not still_theirs(shown, recipient.own_addresses):
                            problem = ADDRESS_CHANGED
                    due = None
                    if due_at is not None and problem is None:
                        due = due_at.get(recipient.employee_id)
                        problem = NO_START_DATE if due is None else None
                    waits = DeliveryStatus.PENDING if due_at is None else DeliveryStatus.SCHEDULED
                    emailed = (
                        confirmed_emailed.get(recipient.employee_id)
                        if confirmed_emailed is not None
                        else recipient.last_emailed_at
                    )
                    rows.append(
                        {
                            "batch_id": batch_id,
                            "employee_id": recipient.employee_id,
                            "account_id": account_id,
                            "email_address": address,
                            "confirmed_emailed_at": emailed,
                            "status": DeliveryStatus.SKIPPED if problem else waits,
                            "error": problem,
                            "due_at": due,
                            "bypass_bounce_list": recipient.employee_id in bypass_bounce_list,
                        }
                    )
                    if problem:
                        target = employee_target(recipient.employee_number)
                        skips.append(
                            (
                                AuditAction.CREDENTIALS_SKIPPED,
                                target,
                                {"batch_id": batch_id, "reason": problem},
                            )
                        )
                if rows:
                    session.execute(insert(_DELIVERIES), rows)
                record_many(session, actor, skips)
                skipped += len(skips)
                session.expunge_all()
            record(
                session,
                actor,
                AuditAction.BATCH_STARTED,
                batch_target(batch_id),
                source=source,
                channel_id=channel_id,
                mode=mode,
                employees=employees,
                to_send=employees - skipped,
                skipped=skipped,
                **({"schedule": dict(schedule)} if schedule is not None else {}),
            )
            if enqueue is not None:
                enqueue(session, batch_id)
            return batch_id
    except IntegrityError:
        if not idempotency_key:
            raise
        with ctx.sessions() as session:  # a concurrent call with the same key won the race
            existing = batch_with_key(session, idempotency_key)
        if existing is None:
            raise
        raise DuplicateBatchError(existing) from None


def batch_with_key(session: Session, idempotency_key: str) -> int | None:
    """The id of the batch started with `idempotency_key`, if any."""
    query = select(CredentialBatch.id).where(CredentialBatch.idempotency_key == idempotency_key)
    return session.scalar(query)


def delivery_counts(session: Session, batch_id: int) -> dict[str, int]:
    """How many deliveries of the batch are in each status."""
    query = (
        select(Delivery.status, func.count()).where(Delivery.batch_id == batch_id).group_by(Delivery.status)
    )
    counts = {str(status): 0 for status in DeliveryStatus}
    counts.update({str(status): count for status, count in session.execute(query)})
    return counts


def remember_message(sessions: sessionmaker[Session], batch_id: int, channel_id: str, ts: str) -> None:
    """Keep where the batch's message is (the conversation id Slack answered, a D... id for a DM, and the
    timestamp), so a resumed batch and later updates find it."""
    with sessions.begin() as session:
        session.execute(
            update(CredentialBatch)
            .where(CredentialBatch.id == batch_id)
            .values(channel_id=channel_id, slack_message_ts=ts)
        )


def failed_employee_ids(session: Session, batch_id: int) -> list[int]:
    """Employees whose delivery failed in a batch, to offer them again."""
    query = (
        select(Delivery.employee_id)
        .where(Delivery.batch_id == batch_id, Delivery.status == DeliveryStatus.FAILED)
        .order_by(Delivery.id)
    )
    return list(session.scalars(query))


def request_stop(sessions: sessionmaker[Session], batch_id: int, reason: str) -> None:
    """Ask every worker running the batch to stop: deliveries not started are skipped with `reason`."""
    with sessions.begin() as session:
        session.execute(
            update(CredentialBatch)
            .where(CredentialBatch.id == batch_id, CredentialBatch.stop_reason.is_(None))
            .values(stop_reason=reason)
        )


@dataclass(frozen=True)
class BatchRow:
    """One line of `credbot batches`."""

    batch_id: int
    created_at: datetime
    requested_by: str
    source: str
    status: str
    resumed: int
    counts: dict[str, int]


def list_batches(session: Session, limit: int = 20) -> list[BatchRow]:
    """The newest batches with their delivery counts per status."""
    batches = session.execute(
        select(
            CredentialBatch.id,
            CredentialBatch.created_at,
            CredentialBatch.requested_by,
            CredentialBatch.source,
            CredentialBatch.status,
            CredentialBatch.resumed,
        )
        .order_by(CredentialBatch.id.desc())
        .limit(limit)
    ).all()
    ids = [row[0] for row in batches]
    counts: dict[int, dict[str, int]] = {i: {str(s): 0 for s in DeliveryStatus} for i in ids}
    for batch_id, status, count in session.execute(
        select(Delivery.batch_id, Delivery.status, func.count())
        .where(Delivery.batch_id.in_(ids))
        .group_by(Delivery.batch_id, Delivery.status)
    ):
        counts[batch_id][str(status)] = count
    return [BatchRow(*row, counts=counts[row[0]]) for row in batches]


def summarise(session: Session, batch_id: int) -> BatchSummary:
    batch = session.get_one(CredentialBatch, batch_id)
    rows = session.execute(  # plain columns, not ORM objects: this is the one per-employee cost
        select(
            Delivery.id,
            Employee.employee_number,
            Employee.first_name,
            Employee.last_name,
            Account.username,
            Delivery.email_address,
            Delivery.status,
            Delivery.error,
        )
        .join(Employee, Employee.id == Delivery.employee_id)
        .outerjoin(Account, Account.id == Delivery.account_id)
        .where(Delivery.batch_id == batch_id)
        .order_by(Delivery.id)
    )
    outcomes: dict[str, list[DeliveryOutcome]] = {status: [] for status in DeliveryStatus}
    for delivery_id, number, first, last, username, address, status, error in rows:
        name = full_name(first, last)
        outcomes[status].append(
            DeliveryOutcome(delivery_id, number, name, username, address, DeliveryStatus(status), error)
        )
    return BatchSummary(
        batch_id=batch_id,
        status=BatchStatus(batch.status),
        sent=outcomes[DeliveryStatus.SENT],
        failed=outcomes[DeliveryStatus.FAILED],
        skipped=outcomes[DeliveryStatus.SKIPPED],
        error=batch.error,
        in_doubt=outcomes[DeliveryStatus.IN_DOUBT],
        unfinished=len(outcomes[DeliveryStatus.PENDING]) + len(outcomes[DeliveryStatus.SENDING]),
    )
