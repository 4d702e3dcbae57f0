"""Status report: accounts, gaps in the directory, recent credential batches and failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.accounts import status_column
from bot.delivery_events import state_counts
from bot.sending.recipients import count_never_emailed
from models import Account, AccountStatus, CredentialBatch, Delivery, DeliveryStatus, Employee


@dataclass(frozen=True)
class BatchLine:
    batch_id: int
    requested_by: str
    source: str
    created_at: datetime
    status: str
    sent: int
    failed: int
    skipped: int
    pending: int
    delivery: dict[str, int]
    """Deliveries by MailState (SendGrid's events)."""


@dataclass(frozen=True)
class FailureLine:
    batch_id: int
    employee_number: str
    name: str
    address: str | None
    error: str | None
    at: datetime


@dataclass(frozen=True)
class Report:
    employees: int
    active_employees: int
    accounts_by_status: dict[str, int]
    """Every AccountStatus, zero included; "locked" counts accounts locked now (see `status_column`)."""
    without_account: int
    """Active employees without an account."""
    without_email: int
    """Active employees without an email address."""
    never_emailed: int
    """As `bot.sending.recipients.never_emailed`: the number the picker offers to email."""
    batches: list[BatchLine]
    all_batches: int
    failures: list[FailureLine]
    all_failures: int
    delivery_states: dict[str, int]
    """Deliveries whose welcome email was accepted, by MailState (SendGrid's events), over all batches."""


def build_report(session: Session, batches: int = 10, failures: int = 20) -> Report:
    """The report, with the `batches` newest batches and the `failures` newest failed deliveries."""
    active = Employee.active.is_(True)
    count = select(func.count()).select_from(Employee)
    shown = status_column()
    by_status = dict(session.execute(select(shown, func.count()).group_by(shown)).all())
    return Report(
        employees=session.scalar(count) or 0,
        active_employees=session.scalar(count.where(active)) or 0,
        accounts_by_status={str(status): by_status.get(status, 0) for status in AccountStatus},
        without_account=session.scalar(
            count.outerjoin(Account, Account.employee_id == Employee.id).where(active, Account.id.is_(None))
        )
        or 0,
        without_email=session.scalar(count.where(active, Employee.email.is_(None))) or 0,
        never_emailed=count_never_emailed(session),
        batches=recent_batches(session, batches),
        all_batches=session.scalar(select(func.count()).select_from(CredentialBatch)) or 0,
        failures=_recent_failures(session, failures),
        all_failures=session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.FAILED)
        )
        or 0,
        delivery_states=state_counts(session),
    )


def recent_batches(session: Session, limit: int) -> list[BatchLine]:
    batches = list(session.scalars(select(CredentialBatch).order_by(CredentialBatch.id.desc()).limit(limit)))
    counts: dict[tuple[int, str], int] = {}
    if batches:
        query = (
            select(Delivery.batch_id, Delivery.status, func.count())
            .where(Delivery.batch_id.in_([batch.id for batch in batches]))
            .group_by(Delivery.batch_id, Delivery.status)
        )
        counts = {(batch_id, status): n for batch_id, status, n in session.execute(query)}
    return [
        BatchLine(
            batch_id=batch.id,
            requested_by=batch.requested_by,
            source=batch.source,
            created_at=batch.created_at,
            status=batch.status,
            sent=counts.get((batch.id, DeliveryStatus.SENT), 0),
            failed=counts.get((batch.id, DeliveryStatus.FAILED), 0),
            skipped=counts.get((batch.id, DeliveryStatus.SKIPPED), 0),
            pending=counts.get((batch.id, DeliveryStatus.PENDING), 0),
            delivery=state_counts(session, batch.id),
        )
        for batch in batches
    ]


def _recent_failures(session: Session, limit: int) -> list[FailureLine]:
    query = (
        select(Delivery, Employee)
        .join(Employee, Employee.id == Delivery.employee_id)
        .where(Delivery.status == DeliveryStatus.FAILED)
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(limit)
    )
    return [
        FailureLine(
            delivery.batch_id,
            employee.employee_number,
            employee.full_name,
            delivery.email_address,
            delivery.error,
            delivery.updated_at,
        )
        for delivery, employee in session.execute(query)
    ]
