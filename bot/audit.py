"""The audit log: one append-only record per action, refusal and failure."""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, event, func, insert, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit_chain import request_seal
from models import AuditEvent

log = logging.getLogger(__name__)
_EVENTS = AuditEvent.__table__


class AuditAction(enum.StrEnum):
    EMPLOYEES_IMPORTED = "employees.imported"
    ADDRESS_CHANGED = "employee.address_changed"
    ACCOUNT_CREATED = "account.created"
    ACCOUNT_UNLOCKED = "account.unlocked"
    ADMIN_ADDED = "admin.added"
    ADMIN_REMOVED = "admin.removed"
    ACCESS_REFUSED = "access.refused"
    BATCH_STARTED = "credentials.batch_started"
    BATCH_FINISHED = "credentials.batch_finished"
    BATCH_ABORTED = "credentials.batch_aborted"
    CREDENTIALS_SENT = "credentials.sent"
    CREDENTIALS_FAILED = "credentials.failed"
    CREDENTIALS_SKIPPED = "credentials.skipped"
    CREDENTIALS_IN_DOUBT = "credentials.in_doubt"
    CREDENTIALS_SUPERSEDED = "credentials.superseded"
    BATCH_RESUMED = "credentials.batch_resumed"
    SLACK_CALL_FAILED = "slack.call_failed"
    SELECTION_SAVED = "credentials.selection_saved"
    SIGN_IN = "portal.sign_in"
    SIGN_IN_FAILED = "portal.sign_in_failed"
    SIGN_OUT = "portal.sign_out"
    ACCOUNT_LOCKED = "portal.account_locked"
    PASSWORD_CHANGED = "portal.password_changed"  # noqa: S105 (an action name)
    SETUP_LINK_USED = "portal.setup_link_used"
    ACCOUNT_DISABLED = "account.disabled"
    ACCOUNT_ENABLED = "account.enabled"
    ACCOUNT_RENAMED = "account.renamed"
    RENAME_NOTICE_FAILED = "account.rename_notice_failed"
    ROLES_EDITED = "account.roles_edited"
    ACCOUNT_ROLES_CHANGED = "account.roles_changed"
    ACCOUNTS_REPORTED = "report.accounts_exported"
    DIGEST_POSTED = "digest.posted"
    PASSWORD_CHANGE_NOTICE_FAILED = "portal.password_change_notice_failed"  # noqa: S105 (an action name)
    NOTICE_FAILED = "mail.notice_failed"
    RECOVERY_REQUESTED = "portal.recovery_requested"
    RECOVERY_APPROVED = "recovery.approved"
    RECOVERY_DENIED = "recovery.denied"
    RECOVERY_EXPIRED = "recovery.expired"
    RESET_LINK_SENT = "portal.reset_link_sent"
    RESET_LINK_FAILED = "portal.reset_link_failed"
    # Changes the identity provider makes through SCIM (actor "scim:NAME"; target the employee).
    SCIM_USER_CREATED = "scim.user_created"
    SCIM_USER_UPDATED = "scim.user_updated"
    SCIM_USER_DEACTIVATED = "scim.user_deactivated"
    SCIM_GROUP_CHANGED = "scim.group_changed"
    SCIM_TOKEN_CREATED = "scim.token_created"  # noqa: S105 (an action name)
    SCIM_TOKEN_REVOKED = "scim.token_revoked"  # noqa: S105 (an action name)


# Who acted and on what, as written in the log. Existing logs and reports read these exact strings.

PORTAL_ACTOR = "portal"
"""The portal itself (locking an account after failed sign-ins, its notice emails)."""
PORTAL_UNKNOWN_USER_ACTOR = "portal:unknown-user"
"""A portal sign-in with a username that matches no account."""
DIGEST_ACTOR = "credbot:digest"
"""The scheduled daily digest."""
_SLACK = "slack:"


def slack_actor(user_id: str | None) -> str:
    """A Slack user, e.g. `slack:U012AB3CD`."""
    return f"{_SLACK}{user_id or 'unknown'}"


def slack_user_of(actor: str) -> str | None:
    """The Slack user id in a `slack_actor` string; None for any other actor."""
    return actor.removeprefix(_SLACK) if actor.startswith(_SLACK) else None


def cli_actor(login: str | None) -> str:
    """Whoever ran a `credbot` command, by their login name, e.g. `cli:hr`."""
    return f"cli:{login or 'unknown'}"


def portal_user_actor(username: str) -> str:
    """An employee acting in the portal: their bare username."""
    return username


def employee_target(employee_number: str) -> str:
    return f"employee:{employee_number}"


def account_target(username: str) -> str:
    return f"account:{username}"


def batch_target(batch_id: int) -> str:
    return f"batch:{batch_id}"


def department_target(department: str) -> str:
    return f"department:{department}"


def record(
    session: Session, actor: str, action: AuditAction, target: str | None = None, **details: Any
) -> AuditEvent:
    """Add an audit event to `session`; it is written with the caller's transaction."""
    audit_event = AuditEvent(actor=actor, action=str(action), target=target, details=details)
    session.add(audit_event)
    wrote_events(session)
    log.info("audit %s actor=%s target=%s", action, actor, target)
    return audit_event


def record_many(
    session: Session, actor: str, events: Sequence[tuple[AuditAction, str | None, dict[str, Any]]]
) -> None:
    """`record` for many events (action, target, details) at once: one INSERT for them all and no ORM
    objects, for a batch's deliveries; written with the caller's transaction."""
    if not events:
        return
    session.execute(
        insert(_EVENTS),
        [
            {"actor": actor, "action": str(action), "target": target, "details": details}
            for action, target, details in events
        ],
    )
    wrote_events(session)
    for action, target, _ in events:
        log.info("audit %s actor=%s target=%s", action, actor, target)


def wrote_events(session: Session) -> None:
    """Note that `session` added audit events, so that they are sealed once it commits."""
    session.info["audit_unsealed"] = True


def seal_later(session: Session) -> None:
    """Do not seal the events `session` added when it commits: the caller calls `seal_now` soon after
    (a batch seals its many events once a second instead of after each delivery's commit)."""
    session.info.pop("audit_unsealed", None)


def seal_now(sessions: sessionmaker[Session]) -> None:
    """Seal what was committed (see `seal_later`); a failure is logged, and the next seal does it."""
    bind = sessions.kw.get("bind")
    if isinstance(bind, Engine):
        try:
            request_seal(bind)
        except Exception as error:
            _seal_failed(error)


@event.listens_for(Session, "after_commit")
def _seal_after_commit(session: Session) -> None:
    bind = session.get_bind()
    if session.info.pop("audit_unsealed", False) and isinstance(bind, Engine):
        try:
            request_seal(bind)
        except Exception as error:  # the events are committed; the next seal (or `audit verify`) seals them
            _seal_failed(error)


def _seal_failed(error: Exception) -> None:
    """Log a failed seal: one line for the database away (a known outage), the traceback otherwise."""
    unreachable = isinstance(error, (OperationalError, InterfaceError))
    log.error("could not seal the audit log (%s)", type(error).__name__, exc_info=not unreachable)


def record_now(
    sessions: sessionmaker[Session],
    actor: str,
    action: AuditAction,
    target: str | None = None,
    **details: Any,
) -> None:
    """Write one audit event in a transaction of its own (refusals, failures outside a unit of work)."""
    with sessions.begin() as session:
        record(session, actor, action, target, **details)


def recent(session: Session, limit: int = 50, action: str | None = None) -> list[AuditEvent]:
    """The newest audit events, newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query))


def count_events(session: Session, action: str | None = None) -> int:
    """How many events `recent` would list without a limit."""
    query = select(func.count()).select_from(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    return session.scalar(query) or 0
