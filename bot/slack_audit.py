"""What the Slack audit trail needs from the database about a batch (no Slack calls here)."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import CredentialBatch, Delivery, DeliveryStatus


def delivery_counts(session: Session, batch_id: int) -> dict[str, int]:
    """How many deliveries of the batch are in each status."""
    query = (
        select(Delivery.status, func.count()).where(Delivery.batch_id == batch_id).group_by(Delivery.status)
    )
    counts = {str(status): 0 for status in DeliveryStatus}
    counts.update({str(status): count for status, count in session.execute(query)})
    return counts


def remember_message(sessions: sessionmaker[Session], batch_id: int, ts: str) -> None:
    """Keep the timestamp of the batch's channel message, so it can be found from the batch."""
    with sessions.begin() as session:
        session.execute(
            update(CredentialBatch).where(CredentialBatch.id == batch_id).values(slack_message_ts=ts)
        )


def failed_employee_ids(session: Session, batch_id: int) -> list[int]:
    """Employees whose delivery failed in a batch, to offer them again."""
    query = (
        select(Delivery.employee_id)
        .where(Delivery.batch_id == batch_id, Delivery.status == DeliveryStatus.FAILED)
        .order_by(Delivery.id)
    )
    return list(session.scalars(query))


def batch_with_key(session: Session, idempotency_key: str) -> int | None:
    """The id of the batch started with `idempotency_key`, if any."""
    query = select(CredentialBatch.id).where(CredentialBatch.idempotency_key == idempotency_key)
    return session.scalar(query)
