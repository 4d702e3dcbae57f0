"""A batch's run in the database: reading it, its heartbeat, skipping what is left after a stop, its
end, and resuming it once its worker stopped (SQL only; the runner is `bot.sending.sender`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot.audit import AuditAction, batch_target, record
from bot.chunks import chunks
from bot.context import Context
from bot.sending import schedule
from bot.sending.retry import db_retry
from models import BatchStatus, CredentialBatch, CredentialMode, Delivery, DeliveryStatus, rowcount, utcnow

_DELIVERIES = Delivery.__table__
_BATCHES = CredentialBatch.__table__


@dataclass(frozen=True)
class Run:
    """A batch as a runner starts it."""

    running: bool
    stop_reason: str | None
    left: int
    """Deliveries pending or in flight."""
    actor: str
    mode: CredentialMode


def read(session: Session, batch_id: int) -> Run:
    batch = session.get(CredentialBatch, batch_id)
    if batch is None:
        raise LookupError(f"no credential batch {batch_id}")
    left = session.scalar(
        select(func.count()).where(
            Delivery.batch_id == batch_id,
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
        )
    )
    running = batch.status == BatchStatus.RUNNING
    return Run(running, batch.stop_reason, left or 0, batch.requested_by, CredentialMode(batch.mode))


def beat(session: Session, batch_id: int, now: datetime) -> str | None:
    """The batch's heartbeat; why it was stopped (by any process), or None."""
    session.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id).values(heartbeat_at=now))
    return session.scalar(select(_BATCHES.c.stop_reason).where(_BATCHES.c.id == batch_id))


def skip_pending(session: Session, batch_id: int, reason: str) -> list[int]:
    """After a stop: every delivery still pending is SKIPPED with `reason`; their ids."""
    ids = list(
        session.scalars(
            select(_DELIVERIES.c.id).where(
                _DELIVERIES.c.batch_id == batch_id,
                _DELIVERIES.c.status == DeliveryStatus.PENDING,
            )
        )
    )
    for chunk in chunks(ids):
        session.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id.in_(chunk), _DELIVERIES.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.SKIPPED, error=reason, updated_at=utcnow())
        )
    return ids


def finish_if_done(session: Session, batch_id: int, actor: str) -> bool:
    """End the batch if nothing is pending or in flight any more; True if this call ended it."""
    left = session.scalar(
        select(func.count()).where(
            _DELIVERIES.c.batch_id == batch_id,
            _DELIVERIES.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
        )
    )
    if left or schedule.park(session, batch_id):  # more deliveries wait for their moment
        return False
    reason = session.scalar(select(_BATCHES.c.stop_reason).where(_BATCHES.c.id == batch_id))
    status = BatchStatus.ABORTED if reason else BatchStatus.FINISHED
    ended = session.execute(
        update(_BATCHES)
        .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
        .values(status=status, error=reason, finished_at=utcnow())
    )
    if rowcount(ended) != 1:
        return False
    counts: dict[str, int] = dict(
        session.execute(
            select(_DELIVERIES.c.status, func.count())
            .where(_DELIVERIES.c.batch_id == batch_id)
            .group_by(_DELIVERIES.c.status)
        ).all()
    )
    action = AuditAction.BATCH_ABORTED if reason else AuditAction.BATCH_FINISHED
    details = {str(s): counts.get(s, 0) for s in DeliveryStatus if s not in ("pending", "sending")}
    record(session, actor, action, batch_target(batch_id), error=reason, **details)
    return True


@db_retry
def resume_stalled(ctx: Context) -> list[tuple[int, str]]:
    """Running batches whose heartbeat stopped for a lease (a worker killed): mark them resumed, once
    across processes; (id, source) of each, for the caller to run again."""
    now = utcnow()
    stale = now - timedelta(seconds=ctx.settings.send_lease_seconds)
    found = []
    with ctx.sessions.begin() as session:
        rows = session.execute(
            select(_BATCHES.c.id, _BATCHES.c.source, _BATCHES.c.requested_by).where(
                _BATCHES.c.status == BatchStatus.RUNNING,
                or_(_BATCHES.c.heartbeat_at.is_(None), _BATCHES.c.heartbeat_at < stale),
            )
        ).all()
        for batch_id, source, requested_by in rows:
            if mark_resumed(session, batch_id, requested_by, "its worker stopped", stale):
                found.append((batch_id, source))
    return found


def mark_resumed(
    session: Session, batch_id: int, actor: str, why: str, stale: datetime | None = None
) -> bool:
    """Count a resume of a running batch (only if its heartbeat is older than `stale`, when given)."""
    condition = and_(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
    if stale is not None:
        condition = and_(condition, or_(_BATCHES.c.heartbeat_at.is_(None), _BATCHES.c.heartbeat_at < stale))
    marked = session.execute(
        update(_BATCHES).where(condition).values(heartbeat_at=utcnow(), resumed=_BATCHES.c.resumed + 1)
    )
    if rowcount(marked) != 1:
        return False
    record(session, actor, AuditAction.BATCH_RESUMED, batch_target(batch_id), reason=why)
    return True
