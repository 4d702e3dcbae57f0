"""Writing what became of claimed deliveries, fenced, in one transaction for many (SQL only).

An ending takes effect only while the runner's claim is current (`claims.current` locks the
deliveries): its final status, the promotion of the credential its welcome email carried (or the
discard of one that never went out), its audit event, the account let go. An ending whose claim is
no longer current is superseded: audited as such, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from bot import credentials
from bot.audit import AuditAction, employee_target, record_many, seal_later
from bot.credentials import Credential, Pending
from bot.sending import claims
from bot.sending.outcomes import SUPERSEDED
from bot.sending.targets import Target
from models import CredentialMode, Delivery, DeliveryStatus

_DELIVERIES = Delivery.__table__

Event = tuple[AuditAction, str, dict[str, Any]]


@dataclass(frozen=True)
class Promotion:
    """A welcome email the mail API accepted: its credential is to become the account's."""

    target: Target
    credential: Credential
    message_id: str


@dataclass(frozen=True)
class Ending:
    """A delivery's final status, to record (PENDING: released, nothing was sent)."""

    target: Target
    status: DeliveryStatus
    error: str | None
    action: AuditAction | None
    promotion: Promotion | None
    discard: tuple[Credential, Pending] | None
    """A credential whose email did not go out, and what was pending before it: it must not work, and
    the earlier one comes back. The account's current password is left alone."""
    username_tried: bool
    username_message_id: str | None


@dataclass(frozen=True)
class Batch:
    """What every event and credential change of a batch's endings names."""

    batch_id: int
    actor: str
    mode: CredentialMode


def write(session: Session, batch: Batch, endings: Sequence[Ending], now: datetime) -> set[int]:
    """Record the endings whose claim is still current (the fencing rule) and audit the others as
    superseded; the ids of the ones recorded."""
    mine = claims.current(session, [e.target.held for e in endings])
    current = [e for e in endings if e.target.delivery_id in mine]
    late = [e for e in endings if e.target.delivery_id not in mine]
    _write_promotions(session, batch, [e.promotion for e in current if e.promotion is not None], now)
    _write_endings(session, batch, current, now)
    if late:
        record_many(session, batch.actor, [_superseded(batch, e) for e in late])
    return mine


def write_skipped(session: Session, batch: Batch, targets: Sequence[Target], reason: str) -> None:
    """Claimed deliveries not to be sent (their account is held by another): SKIPPED at once, audited."""
    session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id.in_([target.delivery_id for target in targets]))
        .values(status=DeliveryStatus.SKIPPED, error=reason, lease_until=None)
    )
    events = [delivery_event(batch, t, AuditAction.CREDENTIALS_SKIPPED, reason) for t in targets]
    record_many(session, batch.actor, events)


def delivery_event(batch: Batch, target: Target, action: AuditAction, reason: str | None) -> Event:
    """A delivery's audit event, for `record_many`."""
    details = {
        "batch_id": batch.batch_id,
        "delivery_id": target.delivery_id,
        "username": target.username,
        "address": target.address,
        "mode": batch.mode,
        "reason": reason,
    }
    return action, employee_target(target.employee_number), details


def _superseded(batch: Batch, ending: Ending) -> Event:
    """The audit event of a late result: what this runner would have recorded, and its token."""
    action, target, details = delivery_event(
        batch, ending.target, AuditAction.CREDENTIALS_SUPERSEDED, SUPERSEDED
    )
    late = {"late_status": str(ending.status), "late_reason": ending.error, "fence": ending.target.fence}
    accepted = {"welcome_accepted": ending.promotion is not None}
    return action, target, details | late | accepted


def _write_promotions(session: Session, batch: Batch, promotions: list[Promotion], now: datetime) -> None:
    made = []
    for promotion in promotions:
        assert promotion.target.account_id is not None
        credential = promotion.credential
        made.append(
            credentials.Promotion(promotion.target.account_id, credential.secret_hash, credential.expires_at)
        )
    if made:
        credentials.promote_many(session, batch.mode, made, emailed_by=batch.actor, now=now)


def _write_endings(session: Session, batch: Batch, endings: list[Ending], now: datetime) -> None:
    for ending in endings:
        if ending.discard is not None and ending.target.account_id is not None:
            credential, before = ending.discard
            credentials.discard(session, ending.target.account_id, batch.mode, credential.secret_hash, before)
    ended = update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
    values: dict[str, Any] = {
        "status": bindparam("b_status"),
        "error": bindparam("b_error"),
        "lease_until": None,
        "welcome_sent_at": bindparam("b_welcome_at"),  # written only here: with the delivery's ending
        "welcome_message_id": bindparam("b_welcome"),
    }
    for tried in (False, True):
        rows = [
            {
                "b_id": e.target.delivery_id,
                "b_status": e.status,
                "b_error": e.error,
                "b_welcome_at": now if e.promotion else None,
                "b_welcome": (e.promotion.message_id or None) if e.promotion else None,
            }
            | ({"b_message": e.username_message_id or None} if tried else {})
            for e in endings
            if e.username_tried == tried
        ]
        if rows and tried:  # `attempts` counts the emails handed to the mail API
            more = {"attempts": _DELIVERIES.c.attempts + 1, "username_message_id": bindparam("b_message")}
            session.execute(ended.values(values | more), rows)
        elif rows:
            session.execute(ended.values(values), rows)
    claims.let_go_accounts(
        session, [(e.target.account_id, e.target.delivery_id) for e in endings if e.target.account_id]
    )
    events = [delivery_event(batch, e.target, e.action, e.error) for e in endings if e.action is not None]
    record_many(session, batch.actor, events)
    seal_later(session)  # the heartbeat seals once a second, not every group
