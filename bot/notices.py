"""Notice emails to an employee (e.g. "your password was changed"), sent by a background job.

`enqueue_notice(ctx, account_id, "password_changed", subject, changed_at=now)` renders
`templates/emails/password_changed.{txt,html}` in a worker and sends it through the normal transport.
Every template gets `first_name`, `username`, `company` and `sign_in_url`; the keywords add to them
(JSON values; a datetime is passed as ISO text and the templates' `time` filter reads it).
The notice goes through the outbox (`bot.outbox`): with the job queue away it waits and is sent once
the queue is back. A service that cannot be reached is retried with backoff; a refusal, a missing
address or the last retry failing is audited (`failure_action`) and logged, never raised into the web
request.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot import jobs, outbox
from bot.accounts import Renamed
from bot.audit import PORTAL_ACTOR, AuditAction, account_target, record_now
from bot.context import Context
from bot.mail import MailError, MailUnavailable, OutgoingEmail, make_transport, render_email
from bot.time_zones import zone_of
from models import Account, Employee, full_name, utcnow

log = logging.getLogger(__name__)

RETRIES = 5


def enqueue_notice(
    ctx: Context,
    account_id: int,
    template: str,
    subject: str,
    *,
    actor: str = PORTAL_ACTOR,
    failure_action: AuditAction = AuditAction.NOTICE_FAILED,
    **context: Any,
) -> None:
    """Queue the notice email `template` to the account's employee; `subject` may use {company}.

    Never raises into the request that made the change: the notice is kept in the outbox
    (`bot.outbox`) and sent once the job queue is reachable; a database too far away to keep it is
    logged and audited as the notice failing.
    """
    values = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in context.items()}
    try:
        with ctx.sessions.begin() as session:
            args = (account_id, template, subject, actor, str(failure_action), values)
            outbox.stage(session, send_notice, *args)
    except Exception as error:
        log.exception("could not keep the %s notice for account %s", template, account_id)
        with contextlib.suppress(Exception):
            _audit_failure(ctx, account_id, template, actor, str(failure_action), f"not queued: {error}")
        return
    try:
        if not outbox.relay(ctx):
            log.warning("the %s notice for account %s waits for the job queue", template, account_id)
    except Exception:  # kept in the outbox: a worker's relay hands it over
        log.warning("the %s notice for account %s waits in the outbox", template, account_id, exc_info=True)


def _give_up(
    ctx: Context,
    error: Exception,
    account_id: int,
    template: str,
    subject: str,
    actor: str,
    failure_action: str,
    context: dict[str, Any],
) -> None:
    _audit_failure(ctx, account_id, template, actor, failure_action, getattr(error, "reason", None) or error)


@jobs.job(max_retries=RETRIES, on_give_up=_give_up)
def send_notice(
    ctx: Context,
    account_id: int,
    template: str,
    subject: str,
    actor: str,
    failure_action: str,
    context: dict[str, Any],
) -> None:
    """Render and send one notice email (the job behind `enqueue_notice`)."""
    settings = ctx.settings
    with ctx.sessions() as session:
        row = session.execute(
            select(
                Account.username, Employee.email, Employee.first_name, Employee.last_name, Employee.time_zone
            )
            .join(Employee, Account.employee_id == Employee.id)
            .where(Account.id == account_id)
        ).first()
    if row is None:
        log.warning("notice %s: account %s no longer exists", template, account_id)
        return
    username, address, first_name, last_name, time_zone = row
    if not address:
        _audit_failure(ctx, account_id, template, actor, failure_action, "no email address", username)
        return
    text, html = render_email(
        template,
        first_name=first_name,
        username=username,
        company=settings.company_name,
        sign_in_url=settings.sign_in_url,
        time_zone=zone_of(time_zone, settings.default_time_zone),
        **context,
    )
    email = OutgoingEmail(
        to_address=address,
        to_name=full_name(first_name, last_name),
        subject=subject.format(company=settings.company_name),
        text=text,
        html=html,
        category=f"credbot-{template.replace('_', '-')}",
    )
    try:
        message_id = make_transport(settings).send(email)
    except MailUnavailable:
        raise  # retried by the job layer; audited when the last retry fails
    except MailError as error:  # refused: trying again would not help
        _audit_failure(ctx, account_id, template, actor, failure_action, error.reason, username)
        return
    log.info("notice %s for account %s accepted as %s", template, account_id, message_id)


def _audit_failure(
    ctx: Context,
    account_id: int,
    template: str,
    actor: str,
    action: str,
    reason: object,
    username: str | None = None,
) -> None:
    if username is None:
        with ctx.sessions() as session:
            # The failed attempt read the account, and accounts are never deleted.
            username = session.execute(select(Account.username).where(Account.id == account_id)).scalar_one()
    log.warning("could not send the %s email for account %s: %s", template, account_id, reason)
    record_now(
        ctx.sessions,
        actor,
        AuditAction(action),
        account_target(username),
        error=str(reason)[:500],
        **({"template": template} if action == AuditAction.NOTICE_FAILED else {}),
    )


def notify_renamed(ctx: Context, renamed: Renamed, actor: str) -> bool:
    """Queue the email telling the employee their new username (and that the old one stopped working);
    False when the employee has no address, so nothing was queued."""
    if not renamed.email:
        return False
    enqueue_notice(
        ctx,
        renamed.account_id,
        "username_changed",
        "Your {company} Self-Service username was changed",
        actor=actor,
        failure_action=AuditAction.RENAME_NOTICE_FAILED,
        old_username=renamed.old_username,
        changed_at=utcnow(),
    )
    return True


def rename_notice_text(renamed: Renamed) -> str:
    """What the admin is told about the email a rename sends (or cannot send)."""
    if not renamed.email:
        return (
            "The employee has no email address, so nobody was emailed: tell them their new username yourself."
        )
    return (
        f"An email with the new username was queued for {renamed.email}; "
        f"if it cannot be sent, that is audited as {AuditAction.RENAME_NOTICE_FAILED}."
    )
