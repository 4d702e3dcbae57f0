"""Employee selections kept server-side between two Slack modals, as audit events.

A modal's `private_metadata` holds at most 3,000 characters: too few for 1,000 employee ids. The list an
admin reviews is therefore saved as a `credentials.selection_saved` audit event (a fact worth keeping
anyway: who was shown which list) and the modal carries only a reference, `<event id>.<random nonce>`.
Only the admin who saved a selection can load it, and only with the nonce.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.audit import AuditAction, record
from models import AuditEvent


class SelectionNotFound(LookupError):
    """The reference is unknown, malformed, or belongs to another admin."""


def save_selection(
    sessions: sessionmaker[Session],
    actor: str,
    employee_ids: Sequence[int],
    purpose: str,
    addresses: Mapping[int, str | None] | None = None,
    emailed: Mapping[int, datetime | None] | None = None,
    bypass: Collection[int] = (),
    switches: Mapping[int, str] | None = None,
) -> str:
    """Store `employee_ids` (order kept), and the address and last-emailed time shown for each when
    given; the reference to put in the modal. `bypass`: employees shown as on SendGrid's bounce list
    (sent bypassing it). `switches`: employees the admin switched to their other address (`work` or
    `personal`), kept for the next view of the same confirmation."""
    nonce = secrets.token_urlsafe(12)
    shown: dict[str, Any] = {}
    if addresses is not None:
        shown["addresses"] = {str(k): v for k, v in addresses.items()}
    if emailed is not None:
        shown["emailed"] = {str(k): v.isoformat() if v else None for k, v in emailed.items()}
    if bypass:
        shown["bypass_bounce_list"] = sorted(bypass)
    if switches:
        shown["address_switches"] = {str(k): v for k, v in switches.items()}
    with sessions.begin() as session:
        event = record(
            session,
            actor,
            AuditAction.SELECTION_SAVED,
            purpose,
            nonce=nonce,
            count=len(employee_ids),
            employee_ids=list(employee_ids),
            **shown,
        )
        session.flush()
        return f"{event.id}.{nonce}"


def load_selection(session: Session, reference: str, actor: str) -> list[int]:
    """The employee ids saved under `reference` by `actor`."""
    event = _saved(session, reference, actor)
    return [int(employee_id) for employee_id in event.details.get("employee_ids", [])]


def confirmed_addresses(session: Session, reference: str, actor: str) -> dict[int, str | None] | None:
    """The address shown per employee id when the selection was saved (None if none were saved)."""
    addresses = _saved(session, reference, actor).details.get("addresses")
    return None if addresses is None else {int(k): v for k, v in addresses.items()}


def confirmed_emailed(session: Session, reference: str, actor: str) -> dict[int, datetime | None] | None:
    """When each employee was last emailed, as shown when the selection was saved (None if not saved)."""
    emailed = _saved(session, reference, actor).details.get("emailed")
    if emailed is None:
        return None
    return {int(k): datetime.fromisoformat(v) if v else None for k, v in emailed.items()}


def confirmed_bypass(session: Session, reference: str, actor: str) -> set[int]:
    """The employees whose address the admin confirmed while shown on SendGrid's bounce list."""
    return {int(i) for i in _saved(session, reference, actor).details.get("bypass_bounce_list", [])}


def confirmed_switches(session: Session, reference: str, actor: str) -> dict[int, str]:
    """The employees switched to their other address on the confirmation, and to which (`save_selection`)."""
    switches = _saved(session, reference, actor).details.get("address_switches") or {}
    return {int(k): str(v) for k, v in switches.items()}


def _saved(session: Session, reference: str, actor: str) -> AuditEvent:
    event_id, _, nonce = reference.partition(".")
    if not event_id.isdigit() or not nonce:
        raise SelectionNotFound(reference)
    event = session.get(AuditEvent, int(event_id))
    if (
        event is None
        or event.action != AuditAction.SELECTION_SAVED
        or event.actor != actor
        or not secrets.compare_digest(str(event.details.get("nonce", "")), nonce)
    ):
        raise SelectionNotFound(reference)
    return event


def selection_id(reference: str) -> str:
    """The stable part of a reference (the audit event id), e.g. for idempotency keys."""
    return reference.partition(".")[0]
