"""What SendGrid did with each email after accepting it: Event Webhook events, delivery states, bad addresses.

SendGrid's Event Webhook is per account: it carries events about every app mailing from it. Only
credbot's own count (`apply_events`): the custom args credbot sets on every email name this installation
(`credbot_instance`), the batch and the delivery, and the event's message id must be one of that
delivery's emails. Events are validated one by one; a bad one is counted and skipped, never the POST.
Stored events are idempotent by `sg_event_id`, as SendGrid retries. Each email's state is the greatest of
its events in one fixed order, so duplicates and any arrival order end in the same state:

    processed < deferred < (delivered, blocked, dropped, bounce: the latest wins) < spam report

A delivery's state combines its emails: a bounce, block or drop of either shows; delivered once every
email it sent was delivered; deferred while one is deferred; else waiting. An address that bounced or was
dropped is flagged on the employee until it is changed or later delivered to.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot import jobs
from bot.chunks import CHUNK, chunks
from bot.context import Context
from bot.installation import (
    BATCH_ARG,
    DELIVERY_ARG,
    INSTANCE_ARG,
    LEGACY_BATCH_ARG,
    LEGACY_DELIVERY_ARG,
    identity,
)
from bot.mail.suppressions import BOUNCE_LIST_DROP
from bot.outside_text import inert
from bot.sending.emails import USERNAME_CATEGORY, WELCOME_CATEGORY
from bot.settings import Settings
from models import (
    BatchSource,
    CredentialBatch,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Employee,
    full_name,
    rowcount,
    utcnow,
)

log = logging.getLogger(__name__)

UPDATE_INTERVAL = timedelta(seconds=3)
"""At most one update of a batch's delivery line in Slack per this interval, whatever the event rate."""
STALE_SCHEDULE = timedelta(seconds=60)
"""A scheduled update this far overdue was lost (its process stopped): the next event schedules anew."""


class MailState(enum.StrEnum):
    WAITING = "waiting"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    SPAM_REPORT = "spam_report"
    BOUNCED = "bounced"
    BLOCKED = "blocked"
    DROPPED = "dropped"


PROBLEM_STATES = frozenset({MailState.BOUNCED, MailState.BLOCKED, MailState.DROPPED})
"""Posted in the batch's thread with buttons to fix and resend."""
BAD_ADDRESS_STATES = frozenset({MailState.BOUNCED, MailState.DROPPED})
"""Flag the address on the employee."""

# event -> (class, rank within the class, state); the greatest (class, time, rank) decides.
_ORDER: dict[str, tuple[int, int, MailState]] = {
    "processed": (0, 0, MailState.WAITING),
    "deferred": (1, 0, MailState.DEFERRED),
    "delivered": (2, 0, MailState.DELIVERED),
    "blocked": (2, 1, MailState.BLOCKED),
    "dropped": (2, 2, MailState.DROPPED),
    "bounce": (2, 3, MailState.BOUNCED),
    "spamreport": (3, 0, MailState.SPAM_REPORT),
}
TRACKED_EVENTS = frozenset(_ORDER)
_EMAILS = {WELCOME_CATEGORY: "welcome", USERNAME_CATEGORY: "username"}


# --- parsing ------------------------------------------------------------------------------------------------

MAX_ID = 2**31 - 1
"""Batch and delivery ids are INTEGER columns: a larger id is no credbot id."""
MAX_EVENT_DEPTH = 4
"""An event holds scalars, lists (categories) and small objects (an IP pool): deeper is malformed."""
MAX_EVENT_ID = 100
MAX_MESSAGE_ID = 255
MAX_STORED_REASON = 2000
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31
FUTURE_SKEW = timedelta(minutes=5)
"""An event dated further ahead than this (SendGrid's clock, or ours, is off) counts as happening when it
arrived, so that it cannot decide a delivery's state against every later event."""
_DIGITS = re.compile(r"[0-9]{1,10}", re.ASCII)
_NAMESPACED = (BATCH_ARG, DELIVERY_ARG, INSTANCE_ARG)


@dataclass(frozen=True)
class ParsedEvent:
    """One well-formed event carrying credbot's custom args (nothing personal kept but SendGrid's reason)."""

    sg_event_id: str
    batch_id: int
    delivery_id: int
    legacy: bool
    """Matched by the old `batch_id`/`delivery_id` args: only for deliveries sent before the namespaced ones,
    and only with a matching message id."""
    email: str
    """`welcome`, `username`, or "" until the message id (or the category) says."""
    event: str
    occurred_at: datetime
    reason: str | None
    status: str | None
    message_id: str
    """The X-Message-Id part of `sg_message_id` (before its first dot); "" when absent (async bounces)."""


class Ignored(enum.StrEnum):
    """Why an event was not stored; each is counted in the POST's log line."""

    OTHER_MAIL = "for other mail"
    OTHER_INSTALL = "from another install"
    NOT_TRACKED = "not tracked"
    MALFORMED = "malformed"
    TOO_OLD = "about deliveries past retention"


class _Malformed(ValueError):
    pass


def parse_event(raw: Any, instance_id: str, now: datetime) -> ParsedEvent | Ignored:
    """The event, or why it is ignored. Each event is checked on its own: types, ranges, lengths, depth."""
    try:
        return _parse(raw, instance_id, now)
    except _Malformed:
        return Ignored.MALFORMED


def _parse(raw: Any, instance_id: str, now: datetime) -> ParsedEvent | Ignored:
    if not isinstance(raw, dict) or not _shallow(raw, MAX_EVENT_DEPTH):
        raise _Malformed
    if any(key in raw for key in _NAMESPACED):
        if _text(raw.get(INSTANCE_ARG), 64) != instance_id:
            return Ignored.OTHER_INSTALL
        batch_id, delivery_id = _id(raw.get(BATCH_ARG)), _id(raw.get(DELIVERY_ARG))
        if batch_id is None or delivery_id is None:
            raise _Malformed
        legacy = False
    else:
        batch_id, delivery_id = _id(raw.get(LEGACY_BATCH_ARG)), _id(raw.get(LEGACY_DELIVERY_ARG))
        if batch_id is None or delivery_id is None:
            return Ignored.OTHER_MAIL
        legacy = True
    name = raw.get("event")
    if not isinstance(name, str):
        raise _Malformed
    if name == "bounce" and raw.get("type") == "blocked":
        name = "blocked"
    if name not in TRACKED_EVENTS:
        return Ignored.NOT_TRACKED
    timestamp = raw.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise _Malformed
    if not 0 < timestamp < MAX_TIMESTAMP:
        raise _Malformed  # NaN and infinities fail it too
    occurred_at = datetime.fromtimestamp(int(timestamp), UTC)
    if occurred_at > now + FUTURE_SKEW:
        occurred_at = now
    sg_event_id = raw.get("sg_event_id")
    if sg_event_id is None:
        sg_event_id = _content_id(raw)
    elif not isinstance(sg_event_id, str) or not 0 < len(sg_event_id) <= MAX_EVENT_ID:
        raise _Malformed
    message = raw.get("sg_message_id")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE_ID):
        raise _Malformed
    reason = raw.get("reason") or raw.get("response")
    status = raw.get("status")
    if not isinstance(reason, str | None) or not isinstance(status, str | None):
        raise _Malformed
    return ParsedEvent(
        sg_event_id=sg_event_id,
        batch_id=batch_id,
        delivery_id=delivery_id,
        legacy=legacy,
        email=_email_of(raw.get("category")),
        event=name,
        occurred_at=occurred_at,
        reason=reason[:MAX_STORED_REASON] if reason else None,
        status=status[:32] if status else None,
        message_id=(message or "").partition(".")[0],
    )


def _id(value: Any) -> int | None:
    """A credbot id from a custom arg: ASCII digits only (`"²".isdigit()` is true), within INTEGER."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
        return number if 0 < number <= MAX_ID else None
    return None


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


def _email_of(categories: Any) -> str:
    """Which email a category names ("" when none does)."""
    listed = [categories] if isinstance(categories, str) else categories
    if not isinstance(listed, list):
        return ""
    return next((_EMAILS[c] for c in listed if isinstance(c, str) and c in _EMAILS), "")


def _shallow(value: Any, depth: int) -> bool:
    """True when `value` nests no deeper than `depth` objects and lists."""
    if isinstance(value, dict):
        return depth > 0 and all(_shallow(item, depth - 1) for item in value.values())
    if isinstance(value, list):
        return depth > 0 and all(_shallow(item, depth - 1) for item in value)
    return True


def _content_id(raw: dict[str, Any]) -> str:
    """A stable id for an event without `sg_event_id`, so that a retried POST still stores it once."""
    return "sha256:" + hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:64]


# --- states -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailState:
    state: MailState
    at: datetime
    event: str
    reason: str | None
    status: str | None


def email_state(events: Iterable[tuple[str, datetime, str | None, str | None]]) -> EmailState | None:
    """The state of one email from its (event, time, reason, status) events, in any order."""
    best: tuple[Any, ...] | None = None
    for event, at, reason, status in events:
        klass, rank, _ = _ORDER[event]
        key = (klass, at, rank, reason or "", status or "")
        if best is None or key > best[0]:
            best = (key, event, at, reason, status)
    if best is None:
        return None
    _, event, at, reason, status = best
    return EmailState(_ORDER[event][2], at, event, reason, status)


def delivery_state(emails: dict[str, EmailState], username_sent: bool) -> EmailState | None:
    """A delivery's state from its emails' states (`username_sent`: the username email went out too)."""
    welcome = emails.get("welcome") or emails.get("")
    username = emails.get("username")
    known = [state for state in (welcome, username) if state is not None]
    if not known:
        return None
    for state in known:
        if state.state in PROBLEM_STATES:
            return state
    expected = [welcome, username] if username_sent or username else [welcome]
    if all(
        state is not None and state.state in (MailState.DELIVERED, MailState.SPAM_REPORT)
        for state in expected
    ):
        spam = [state for state in known if state.state == MailState.SPAM_REPORT]
        return spam[0] if spam else max(known, key=lambda state: state.at)
    for state in known:
        if state.state == MailState.DEFERRED:
            return state
    return EmailState(MailState.WAITING, max(s.at for s in known), "processed", None, None)


_NO_MAILBOX = re.compile(
    r"does ?n[o']t exist|no such (user|mailbox)|user unknown|unknown user|mailbox (unavailable|not found)|"
    r"recipient (address )?rejected|invalid recipient|address rejected|not a valid mailbox",
    re.IGNORECASE,
)
_FULL = re.compile(r"quota|mailbox (is )?full|over ?quota|insufficient storage", re.IGNORECASE)
_NO_DOMAIN = re.compile(r"domain (not found|does not exist)|host (unknown|not found)|no mx", re.IGNORECASE)
_DROPPED = {
    "bounced address": BOUNCE_LIST_DROP,
    "invalid": "SendGrid found the address invalid",
    "invalid address": "SendGrid found the address invalid",
    "unsubscribed address": "the address unsubscribed from this sender",
    "spam reporting address": "the recipient reported earlier mail as spam; SendGrid no longer sends to it",
}


def plain_reason(state: EmailState) -> str:
    """Why, in plain words, with the mail server's own words (made inert) in brackets."""
    reason, status = state.reason or "", state.status or ""
    detail = f" ({inert(reason)})" if reason else ""
    if state.state == MailState.BOUNCED:
        if status.startswith("5.1.1") or _NO_MAILBOX.search(reason):
            return "the mailbox does not exist" + detail
        if status.startswith("5.2.2") or _FULL.search(reason):
            return "the mailbox is full" + detail
        if status.startswith(("5.1.2", "5.4.4")) or _NO_DOMAIN.search(reason):
            return "the address's domain does not receive mail" + detail
        return "the recipient's mail server refused it" + detail
    if state.state == MailState.BLOCKED:
        return "the recipient's mail server blocked it (often a spam filter)" + detail
    if state.state == MailState.DROPPED:
        return _DROPPED.get(
            reason.strip().lower(), f"SendGrid did not send it: {inert(reason) or 'no reason given'}"
        )
    if state.state == MailState.DEFERRED:
        return "the recipient's mail server asked to try later; SendGrid keeps trying" + detail
    if state.state == MailState.SPAM_REPORT:
        return "delivered, then marked as spam by the recipient"
    return ""


# --- applying a POST ----------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: Counter[Ignored] = field(default_factory=Counter)
    """Events not stored, by why."""
    scheduled: dict[int, datetime] = field(default_factory=dict)
    """Batches whose Slack delivery line should be updated, and when (newly scheduled only)."""

    def describe(self) -> str:
        """Counts only: no address, reason or id of any event."""
        ignored = ", ".join(f"{self.ignored[why]} {why}" for why in Ignored)
        return f"{self.received} received, {self.stored} stored, {self.duplicates} duplicates, {ignored}"


def apply_events(ctx: Context, raw_events: Sequence[Any]) -> ApplyResult:
    """Store the events of one POST about credbot's own emails, update the delivery states and address
    flags, in one transaction. Every other event is counted and ignored.

    Ours: the custom args name this installation and a delivery of that batch, and the event's message id is
    one of that delivery's emails (SendGrid leaves it out of asynchronous bounces: the args then decide).
    Events with the old args count only for deliveries sent before the namespaced ones, by message id.
    """
    now = ctx.clock.now()
    me = identity(ctx.settings, ctx.sessions, ctx.clock)
    result = ApplyResult(received=len(raw_events))
    parsed: dict[str, ParsedEvent] = {}
    for raw in raw_events:
        event = parse_event(raw, me.instance_id, now)
        if isinstance(event, Ignored):
            result.ignored[event] += 1
        elif event.sg_event_id in parsed:
            result.duplicates += 1
        else:
            parsed[event.sg_event_id] = event
    if not parsed:
        return result
    final_before = now - timedelta(days=ctx.settings.delivery_events_retention_days)
    with ctx.sessions.begin() as session:
        deliveries = _deliveries(session, sorted({event.delivery_id for event in parsed.values()}))
        ours = []
        for event in parsed.values():
            matched = _match(event, deliveries.get(event.delivery_id), me.installed_at)
            if matched is None:
                result.ignored[Ignored.OTHER_MAIL] += 1
            elif _aware(deliveries[event.delivery_id]["created_at"]) < final_before:
                result.ignored[Ignored.TOO_OLD] += 1
            else:
                ours.append(matched)
        new = _insert(session, ours, now)
        result.stored = len(new)
        result.duplicates += len(ours) - len(new)
        touched = sorted({event.delivery_id for event in ours if event.sg_event_id in new})
        if touched:
            changed_batches = _update_states(session, touched, deliveries)
            result.scheduled = _schedule(session, changed_batches, now)
    return result


def _deliveries(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    columns = (
        Delivery.id,
        Delivery.batch_id,
        Delivery.employee_id,
        Delivery.email_address,
        Delivery.status,
        Delivery.welcome_message_id,
        Delivery.username_message_id,
        Delivery.mail_state,
        Delivery.mail_state_at,
        Delivery.mail_reason,
        Delivery.created_at,
    )
    for chunk in chunks(ids):
        query = select(*columns).where(Delivery.id.in_(chunk)).order_by(Delivery.id)
        if session.get_bind().dialect.name == "postgresql":
            # FOR NO KEY UPDATE: one POST at a time per delivery (SQLite: one writer at a time anyway).
            query = query.with_for_update(key_share=True)
        for row in session.execute(query).mappings():
            found[row["id"]] = dict(row)
    return found


def _match(event: ParsedEvent, delivery: dict[str, Any] | None, installed_at: datetime) -> ParsedEvent | None:
    """The event with its email, when it is about `delivery` (see `apply_events`); None when it is not."""
    if delivery is None or delivery["batch_id"] != event.batch_id:
        return None
    if event.legacy and _aware(delivery["created_at"]) >= installed_at:
        return None
    if not event.message_id:
        return None if event.legacy else event
    for email in ("welcome", "username"):
        if event.message_id == delivery[f"{email}_message_id"]:
            return replace(event, email=email)
    # The message id is written with the delivery's ending, a moment after the mail API accepted the
    # email; an event can come first. Our own installation's args (never another's) then decide, as
    # long as the delivery is still in flight and has no id recorded for that email: acknowledged and
    # dropped, the event would be lost for good (SendGrid does not post it again).
    emails = [event.email] if event.email else ["welcome", "username"]
    in_flight = not event.legacy and delivery["status"] == DeliveryStatus.SENDING
    if in_flight and any(delivery[f"{email}_message_id"] is None for email in emails):
        return event
    return None


def _insert(session: Session, events: list[ParsedEvent], now: datetime) -> set[str]:
    """Insert the events not stored yet (in sg_event_id order, so concurrent POSTs cannot deadlock)."""
    if not events:
        return set()
    ordered = sorted(events, key=lambda e: e.sg_event_id)
    if session.get_bind().dialect.name == "postgresql":
        return _insert_postgresql(session, ordered, now)
    rows = [
        {
            "sg_event_id": e.sg_event_id,
            "delivery_id": e.delivery_id,
            "email": e.email,
            "event": e.event,
            "occurred_at": e.occurred_at,
            "reason": e.reason,
            "status": e.status,
            "received_at": now,
        }
        for e in ordered
    ]
    new: set[str] = set()
    table = DeliveryEvent.__table__
    # One cached statement executed for many rows: SQLAlchemy batches them into multi-row INSERTs.
    statement = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["sg_event_id"])
        .returning(table.c.sg_event_id)
    )
    for chunk in chunks(rows):
        new.update(session.scalars(statement, list(chunk)))
    return new


_INSERT_UNNEST = text(
    "INSERT INTO delivery_events "
    "(sg_event_id, delivery_id, email, event, occurred_at, reason, status, received_at) "
    "SELECT e.sg_event_id, e.delivery_id, e.email, e.event, e.occurred_at, e.reason, e.status, :received_at "
    "FROM unnest(CAST(:ids AS varchar[]), CAST(:deliveries AS integer[]), "
    "CAST(:emails AS varchar[]), CAST(:events AS varchar[]), CAST(:ats AS timestamptz[]), "
    "CAST(:reasons AS text[]), CAST(:statuses AS varchar[])) WITH ORDINALITY "
    "AS e(sg_event_id, delivery_id, email, event, occurred_at, reason, status, n) "
    "ORDER BY e.n ON CONFLICT (sg_event_id) DO NOTHING RETURNING sg_event_id"
).columns(sg_event_id=String)
"""PostgreSQL: a whole POST's events as one short statement of arrays. A multi-row VALUES statement is a
different long text per POST, which the driver parses anew every time (a fifth of a POST's time)."""


def _insert_postgresql(session: Session, events: list[ParsedEvent], now: datetime) -> set[str]:
    parameters = {
        "ids": [e.sg_event_id for e in events],
        "deliveries": [e.delivery_id for e in events],
        "emails": [e.email for e in events],
        "events": [e.event for e in events],
        "ats": [e.occurred_at for e in events],
        "reasons": [e.reason for e in events],
        "statuses": [e.status for e in events],
        "received_at": now,
    }
    return set(session.scalars(_INSERT_UNNEST, parameters))


def _update_states(
    session: Session, delivery_ids: list[int], deliveries: dict[int, dict[str, Any]]
) -> set[int]:
    """Derive the states of `delivery_ids` from all their events; flag bad addresses; the batches changed."""
    # `deliveries` were read locked (PostgreSQL) in this transaction: they are as read until it ends.
    per_email: dict[int, dict[str, list[tuple[str, datetime, str | None, str | None]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    table = DeliveryEvent.__table__
    for chunk in chunks(delivery_ids):
        query = select(
            table.c.delivery_id,
            table.c.email,
            table.c.event,
            table.c.occurred_at,
            table.c.reason,
            table.c.status,
        ).where(table.c.delivery_id.in_(chunk))
        for delivery_id, email, event, at, reason, status in session.execute(query):
            per_email[delivery_id][email].append((event, _aware(at), reason, status))
    changes: list[dict[str, Any]] = []
    flags, clears, batches = [], [], set()
    for delivery_id, emails in per_email.items():
        known = deliveries[delivery_id]
        states = {email: state for email, events in emails.items() if (state := email_state(events))}
        state = delivery_state(states, username_sent=known["status"] == DeliveryStatus.SENT)
        if state is None:
            continue
        reason = plain_reason(state) or None
        if (known["mail_state"], known["mail_reason"]) == (state.state, reason):
            continue
        batches.add(known["batch_id"])
        changes.append({"b_id": delivery_id, "b_state": state.state, "b_at": state.at, "b_reason": reason})
        address = known["email_address"]
        if state.state in BAD_ADDRESS_STATES and address:
            event = "bounced" if state.state == MailState.BOUNCED else "dropped"
            flags.append(
                {
                    "b_employee": known["employee_id"],
                    "b_address": address,
                    "b_event": event,
                    "b_reason": reason,
                    "b_at": state.at,
                }
            )
        elif state.state == MailState.DELIVERED and address:
            clears.append({"b_employee": known["employee_id"], "b_address": address, "b_at": state.at})
    # Rows in id order, so that two POSTs flagging the same employees cannot deadlock.
    changes.sort(key=lambda row: row["b_id"])
    if session.get_bind().dialect.name == "postgresql" and changes:
        session.execute(
            _STATE_UPDATE_UNNEST,
            {
                "ids": [row["b_id"] for row in changes],
                "states": [str(row["b_state"]) for row in changes],
                "ats": [row["b_at"] for row in changes],
                "reasons": [row["b_reason"] for row in changes],
            },
        )
    else:
        _execute_many(session, _STATE_UPDATE, changes)
    _execute_many(session, _FLAG, sorted(flags, key=lambda row: row["b_employee"]))
    _execute_many(session, _CLEAR_FLAG, sorted(clears, key=lambda row: row["b_employee"]))
    return batches


_DELIVERIES = Delivery.__table__
_EMPLOYEES = Employee.__table__
_STATE_UPDATE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("b_id"))
    .values(
        mail_state=bindparam("b_state"), mail_state_at=bindparam("b_at"), mail_reason=bindparam("b_reason")
    )
)
_STATE_UPDATE_UNNEST = text(
    "UPDATE deliveries SET mail_state = u.state, mail_state_at = u.at, mail_reason = u.reason "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:states AS varchar[]), CAST(:ats AS timestamptz[]), "
    "CAST(:reasons AS text[])) AS u(id, state, at, reason) WHERE deliveries.id = u.id"
)
"""PostgreSQL: every changed delivery in one statement (the rows are locked already, see `_deliveries`)."""
_FLAG = (
    update(_EMPLOYEES)
    .where(
        _EMPLOYEES.c.id == bindparam("b_employee"),
        (_EMPLOYEES.c.bad_address_at.is_(None)) | (_EMPLOYEES.c.bad_address_at <= bindparam("b_at")),
    )
    .values(
        bad_address=bindparam("b_address"),
        bad_address_event=bindparam("b_event"),
        bad_address_reason=bindparam("b_reason"),
        bad_address_at=bindparam("b_at"),
    )
)
_CLEAR_FLAG = (
    update(_EMPLOYEES)
    .where(
        _EMPLOYEES.c.id == bindparam("b_employee"),
        _EMPLOYEES.c.bad_address == bindparam("b_address"),
        _EMPLOYEES.c.bad_address_at < bindparam("b_at"),
    )
    .values(bad_address=None, bad_address_event=None, bad_address_reason=None, bad_address_at=None)
)


def _execute_many(session: Session, statement: Any, rows: list[dict[str, Any]]) -> None:
    for chunk in chunks(rows):
        session.execute(statement, list(chunk))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _schedule(session: Session, batch_ids: set[int], now: datetime) -> dict[int, datetime]:
    """Mark the batches' delivery lines due; the ones this call newly scheduled, with when."""
    scheduled = {}
    for batch_id in sorted(batch_ids):
        batch = session.get(CredentialBatch, batch_id, with_for_update=True)
        if batch is None or batch.source != BatchSource.SLACK:
            continue
        due = _aware(batch.delivery_update_due_at) if batch.delivery_update_due_at else None
        if due is not None and due > now - STALE_SCHEDULE:
            continue  # an update is on its way and will read the new states
        last = batch.delivery_updated_at
        batch.delivery_update_due_at = max(now, last + UPDATE_INTERVAL) if last else now
        scheduled[batch_id] = batch.delivery_update_due_at
    return scheduled


# --- retention ----------------------------------------------------------------------------------------------

PRUNE_CHUNK = 5_000
PRUNE_EVERY_SECONDS = 3600


def prune_events(ctx: Context) -> int:
    """Delete the events that arrived more than DELIVERY_EVENTS_RETENTION_DAYS ago; how many.

    Each delivery keeps its state (stored on it), and events still arriving about it are ignored (see
    `apply_events`), so its state stays the one its events had decided. Deleted in chunks, each its own
    transaction, so that the webhook's writes never wait long.
    """
    cutoff = ctx.clock.now() - timedelta(days=ctx.settings.delivery_events_retention_days)
    table = DeliveryEvent.__table__
    deleted = 0
    while True:
        with ctx.sessions.begin() as session:
            old = select(table.c.id).where(table.c.received_at < cutoff).limit(PRUNE_CHUNK)
            count = rowcount(session.execute(delete(table).where(table.c.id.in_(old.scalar_subquery()))))
        deleted += count
        if count < PRUNE_CHUNK:
            return deleted


@jobs.job()
def prune_delivery_events(ctx: Context) -> None:
    """The scheduled job: prune delivery events past their retention."""
    deleted = prune_events(ctx)
    if deleted:
        days = ctx.settings.delivery_events_retention_days
        log.info("pruned %d delivery events older than %d days", deleted, days)


jobs.every(PRUNE_EVERY_SECONDS)(prune_delivery_events)


# --- reading back -------------------------------------------------------------------------------------------


def state_counts(session: Session, batch_id: int | None = None) -> dict[str, int]:
    """Deliveries whose welcome email was accepted, by MailState (no event yet counts as waiting).

    For one batch, or for every batch when `batch_id` is None.
    """
    counted = (Delivery.status == DeliveryStatus.SENT) | Delivery.mail_state.is_not(None)
    query = select(Delivery.mail_state, func.count()).where(counted).group_by(Delivery.mail_state)
    if batch_id is not None:
        query = query.where(Delivery.batch_id == batch_id)
    counts = {str(state): 0 for state in MailState}
    for state, count in session.execute(query):
        counts[str(state or MailState.WAITING)] += count
    return counts


def untracked_reason(settings: Settings) -> str | None:
    """Why no delivery events will come (None: SendGrid's signed Event Webhook reports them)."""
    if settings.uses_outbox:
        return "outbox"
    if not settings.sendgrid_webhook_public_key:
        return "SENDGRID_WEBHOOK_PUBLIC_KEY is not set"
    return None


def describe_counts(counts: dict[str, int]) -> str:
    """E.g. `18 delivered · 1 bounced · 1 dropped · 0 waiting` (blocked, deferred, spam only when some)."""
    delivered = counts.get(MailState.DELIVERED, 0) + counts.get(MailState.SPAM_REPORT, 0)
    parts = [
        f"{delivered:,} delivered",
        f"{counts.get(MailState.BOUNCED, 0):,} bounced",
        f"{counts.get(MailState.DROPPED, 0):,} dropped",
    ]
    if counts.get(MailState.BLOCKED):
        parts.append(f"{counts[MailState.BLOCKED]:,} blocked")
    if counts.get(MailState.DEFERRED):
        parts.append(f"{counts[MailState.DEFERRED]:,} deferred")
    parts.append(f"{counts.get(MailState.WAITING, 0):,} waiting")
    if counts.get(MailState.SPAM_REPORT):
        parts.append(f"{counts[MailState.SPAM_REPORT]:,} marked as spam")
    return " · ".join(parts)


@dataclass(frozen=True)
class SummaryUpdate:
    """What the Slack trail needs to update a batch's summary: the message as posted, and the counts."""

    batch_id: int
    requested_by: str
    message: dict[str, Any]
    counts: dict[str, int]


def claim_summary_update(
    sessions: sessionmaker[Session], batch_id: int, *, now_if_due: bool = False, now_anyway: bool = False
) -> SummaryUpdate | None:
    """Take the batch's due delivery-line update (at most one caller wins); None when none is due yet.

    `now_if_due`: take it whenever one is scheduled, early (when the summary has just been posted).
    `now_anyway`: take it even if none is scheduled (the line shown is known to be out of date).
    """
    now = utcnow()
    with sessions.begin() as session:
        batch = session.get(CredentialBatch, batch_id, with_for_update=True)
        if batch is None or batch.slack_summary is None:
            return None
        if batch.delivery_update_due_at is None and not now_anyway:
            return None
        due = batch.delivery_update_due_at
        if not (now_if_due or now_anyway) and due is not None and due > now + timedelta(milliseconds=50):
            return None
        batch.delivery_update_due_at = None
        batch.delivery_updated_at = now
        message, requested_by = dict(batch.slack_summary), batch.requested_by
    with sessions() as session:
        counts = state_counts(session, batch_id)
    return SummaryUpdate(batch_id, requested_by, message, counts)


def due_at(sessions: sessionmaker[Session], batch_id: int) -> datetime | None:
    with sessions() as session:
        value = session.scalar(
            select(CredentialBatch.delivery_update_due_at).where(CredentialBatch.id == batch_id)
        )
    return _aware(value) if value else None


def remember_summary(sessions: sessionmaker[Session], batch_id: int, message: dict[str, Any]) -> None:
    """Keep the batch's summary message as posted (channel, ts, text, blocks), to add the delivery line."""
    with sessions.begin() as session:
        session.execute(
            update(CredentialBatch).where(CredentialBatch.id == batch_id).values(slack_summary=message)
        )


@dataclass(frozen=True)
class Problem:
    """A bounced, dropped or blocked delivery, to post once in the batch's thread."""

    delivery_id: int
    employee_id: int
    employee_number: str
    name: str
    address: str | None
    state: MailState
    reason: str | None


_PROBLEM_COLUMNS = (
    Delivery.id,
    Employee.id,
    Employee.employee_number,
    Employee.first_name,
    Employee.last_name,
    Delivery.email_address,
    Delivery.mail_state,
    Delivery.mail_reason,
)


def _problem(row: Sequence[Any]) -> Problem:
    delivery_id, employee_id, number, first, last, address, state, reason = row[:8]
    state = MailState(state) if state else MailState.WAITING
    return Problem(delivery_id, employee_id, number, full_name(first, last), address, state, reason)


def claim_problems(sessions: sessionmaker[Session], batch_id: int) -> list[Problem]:
    """The batch's bounced, dropped and blocked deliveries not posted yet, each claimed by one caller only."""
    with sessions() as session:
        rows = session.execute(
            select(*_PROBLEM_COLUMNS)
            .join(Employee, Employee.id == Delivery.employee_id)
            .where(
                Delivery.batch_id == batch_id,
                Delivery.mail_state.in_([str(state) for state in PROBLEM_STATES]),
                Delivery.problem_posted_at.is_(None),
            )
            .order_by(Delivery.id)
        ).all()
    claimed = []
    for row in rows:
        with sessions.begin() as session:
            won = rowcount(
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == row[0], Delivery.problem_posted_at.is_(None))
                    .values(problem_posted_at=utcnow())
                )
            )
        if won:
            claimed.append(_problem(row))
    return claimed


def release_problems(sessions: sessionmaker[Session], delivery_ids: Sequence[int]) -> None:
    """Posting these failed: the next update of the batch posts them again."""
    with sessions.begin() as session:
        session.execute(update(Delivery).where(Delivery.id.in_(delivery_ids)).values(problem_posted_at=None))


@dataclass(frozen=True)
class DeliveryLine:
    """One employee of a batch for `credbot deliveries`."""

    employee_number: str
    name: str
    address: str | None
    status: str
    state: str | None
    reason: str | None
    last_event: str | None
    last_event_at: datetime | None


def batch_deliveries(session: Session, batch_id: int) -> Iterator[DeliveryLine]:
    """Every delivery of the batch with its state and last event, in delivery order (streamed)."""
    events = DeliveryEvent.__table__
    newest_first = func.row_number().over(
        partition_by=events.c.delivery_id, order_by=(events.c.occurred_at.desc(), events.c.id.desc())
    )
    last = (
        select(
            events.c.delivery_id,
            events.c.event,
            events.c.email,
            events.c.occurred_at,
            newest_first.label("n"),
        )
        .join(_DELIVERIES, _DELIVERIES.c.id == events.c.delivery_id)
        .where(_DELIVERIES.c.batch_id == batch_id)
        .subquery()
    )
    query = (
        select(
            Employee.employee_number,
            Employee.first_name,
            Employee.last_name,
            Delivery.email_address,
            Delivery.status,
            Delivery.mail_state,
            Delivery.mail_reason,
            last.c.event,
            last.c.email,
            last.c.occurred_at,
        )
        .join(Employee, Employee.id == Delivery.employee_id)
        .outerjoin(last, (last.c.delivery_id == Delivery.id) & (last.c.n == 1))
        .where(Delivery.batch_id == batch_id)
        .order_by(Delivery.id)
        .execution_options(yield_per=CHUNK)
    )
    for number, first, last_name, address, status, state, reason, event, email, at in session.execute(query):
        state = state or (MailState.WAITING if status == DeliveryStatus.SENT else None)
        described = f"{event} ({email})" if event and email else event
        yield DeliveryLine(
            number,
            full_name(first, last_name),
            address,
            status,
            state,
            reason,
            described,
            _aware(at) if at else None,
        )


def delivery_problem(session: Session, delivery_id: int) -> tuple[Problem, str | None] | None:
    """The delivery as a Problem, and the employee's current directory address; None if unknown."""
    row = session.execute(
        select(*_PROBLEM_COLUMNS, Employee.email)
        .join(Employee, Employee.id == Delivery.employee_id)
        .where(Delivery.id == delivery_id)
    ).one_or_none()
    return None if row is None else (_problem(row), row[8])
