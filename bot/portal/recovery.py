"""Self-service recovery: "Didn't get your email, or it expired?" on the portal's sign-in page.

The portal only enqueues `take_recovery_request` with what was typed and who typed it, whoever that is:
the answer page, its timing and the rate limit are the same for every input. The job then decides:

- an account emailed but never activated (invited): an approval request for the admins, one pending
  per account (repeated requests collapse into it), expiring after RECOVERY_TTL. Its row is the outbox
  of the Slack card (`card_ts` empty until posted); an admin approves (the usual confirmation, then
  the send) or denies with a reason;
- an active account: a single-use reset link, valid RESET_LINK_TTL, emailed to the address on file at
  once by this job (the token exists only in its memory until the mail API has it); only the newest
  link works, and using it ends every session (`auth.set_password_with_link`);
- anything else (unknown, never emailed, disabled, locked by an admin, no address): nothing but the audit.

Every request and every decision is audited with the client's address and user agent.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from bot import credentials, jobs
from bot.audit import PORTAL_UNKNOWN_USER_ACTOR, AuditAction, account_target, portal_user_actor, record
from bot.context import Context
from bot.mail import MailError, OutgoingEmail, make_transport, render_email
from bot.portal.client import NO_CLIENT, Client
from bot.time_zones import zone_of
from models import (
    Account,
    AccountStatus,
    CredentialMode,
    Delivery,
    Employee,
    RecoveryRequest,
    RecoveryStatus,
    SetupLink,
    full_name,
)

log = logging.getLogger(__name__)

RECOVERY_TTL = timedelta(hours=24)
RESET_LINK_TTL = timedelta(hours=1)
MAX_TYPED = 320
"""Longer input is neither a username nor an email address."""
MAX_REASON = 500
RECOVERY_ACTOR = "credbot:recovery"
"""The audit actor of a request expiring."""


class RecoveryOutcome(enum.StrEnum):
    """What a request led to (audited; never shown to the requester)."""

    NO_ACCOUNT = "no_account"
    NOT_ELIGIBLE = "not_eligible"
    APPROVAL_REQUESTED = "approval_requested"
    ALREADY_PENDING = "already_pending"
    RESET_LINK = "reset_link"
    """An active account: a reset link is due (what the request's audit event says)."""
    RESET_SENT = "reset_sent"
    RESET_FAILED = "reset_failed"


def submit_request(ctx: Context, typed: str, client: Client) -> None:
    """Enqueue the request: the same work for every input, so the answer tells nobody anything."""
    jobs.use(ctx)
    take_recovery_request.send(typed[:MAX_TYPED], client.address, client.user_agent)


@jobs.job(max_retries=3)
def take_recovery_request(ctx: Context, typed: str, address: str | None, user_agent: str | None) -> None:
    """The job behind `submit_request`."""
    take_request(ctx, typed, Client(address, user_agent))


def take_request(
    ctx: Context, typed: str, client: Client = NO_CLIENT, now: datetime | None = None
) -> RecoveryOutcome:
    """Act on one request for the account named by `typed` (a username or an email address)."""
    now = now or ctx.clock.now()
    with ctx.sessions() as session:
        found = _find(session, typed)
        account_id = found.id if found else None
    with ctx.sessions.begin() as session:
        if account_id is None:
            record(
                session,
                PORTAL_UNKNOWN_USER_ACTOR,
                AuditAction.RECOVERY_REQUESTED,
                outcome=str(RecoveryOutcome.NO_ACCOUNT),
                **client.audit(),
            )
            return RecoveryOutcome.NO_ACCOUNT
        account = _locked_account(session, account_id)
        outcome, request_id = _decide(session, account, client, now)
        record(
            session,
            portal_user_actor(account.username),
            AuditAction.RECOVERY_REQUESTED,
            account_target(account.username),
            outcome=str(outcome),
            **({"request_id": request_id} if request_id else {}),
            **client.audit(),
        )
    if outcome is RecoveryOutcome.RESET_LINK:
        return send_reset_link(ctx, account.id, client, now)
    return outcome


def _locked_account(session: Session, account_id: int) -> Account:
    """The account, read after taking its lock as the transaction's first statement: parallel requests
    for one account queue here, so at most one request is pending. The lock is a write that changes
    nothing, not SELECT ... FOR UPDATE: SQLite has no row locks, and a write takes its database lock."""
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(updated_at=Account.updated_at)
        .execution_options(synchronize_session=False)
    )
    account = session.get(Account, account_id, options=[joinedload(Account.employee)])
    assert account is not None  # accounts are never deleted
    return account


def _find(session: Session, typed: str) -> Account | None:
    """The account whose username or (one employee's) email address is `typed`, case-insensitively."""
    typed = typed.strip()
    if not typed or len(typed) > MAX_TYPED or not typed.isprintable():
        return None
    folded = typed.lower()
    query = (
        select(Account)
        .join(Employee, Account.employee_id == Employee.id)
        .where(or_(func.lower(Account.username) == folded, func.lower(Employee.email) == folded))
        .options(joinedload(Account.employee))
    )
    found = list(session.scalars(query).unique())
    by_username = [account for account in found if account.username.lower() == folded]
    if by_username:
        return by_username[0]
    return found[0] if len(found) == 1 else None  # an address shared by several: nobody to pick


def _decide(
    session: Session, account: Account, client: Client, now: datetime
) -> tuple[RecoveryOutcome, int | None]:
    """What the request does for this account (the reset email itself is sent after the commit)."""
    employee = account.employee
    if not employee.active or account.status in (AccountStatus.DISABLED, AccountStatus.LOCKED):
        return RecoveryOutcome.NOT_ELIGIBLE, None
    if account.status == AccountStatus.ACTIVE:
        return (RecoveryOutcome.RESET_LINK, None) if employee.email else (RecoveryOutcome.NOT_ELIGIBLE, None)
    if account.status != AccountStatus.INVITED or account.credentials_emailed_at is None:
        return RecoveryOutcome.NOT_ELIGIBLE, None
    pending = _pending_request(session, account.id, now)
    if pending is not None:
        pending.request_count += 1
        pending.last_requested_at = now
        return RecoveryOutcome.ALREADY_PENDING, pending.id
    request = RecoveryRequest(
        account_id=account.id,
        requested_at=now,
        last_requested_at=now,
        expires_at=now + RECOVERY_TTL,
        client_address=client.address,
        user_agent=client.user_agent,
    )
    session.add(request)
    session.flush()
    return RecoveryOutcome.APPROVAL_REQUESTED, request.id


def _pending_request(session: Session, account_id: int, now: datetime) -> RecoveryRequest | None:
    """The account's pending request; one past its time is marked expired (and audited) on the way."""
    pending = session.scalars(
        select(RecoveryRequest).where(
            RecoveryRequest.account_id == account_id, RecoveryRequest.status == RecoveryStatus.PENDING
        )
    ).first()
    if pending is not None and pending.expires_at <= now:
        _expire(session, pending)
        return None
    return pending


def _expire(session: Session, request: RecoveryRequest) -> None:
    request.status = RecoveryStatus.EXPIRED
    record(
        session,
        RECOVERY_ACTOR,
        AuditAction.RECOVERY_EXPIRED,
        account_target(request.account.username),
        request_id=request.id,
    )


# --- Reset links for active accounts -------------------------------------------------------------------


def send_reset_link(ctx: Context, account_id: int, client: Client, now: datetime) -> RecoveryOutcome:
    """Make a reset link and email it now; once the mail API accepted it, older open links stop working.

    A link whose email was refused (or could not be handed over) is revoked at once and the failure
    audited; the link in the newest email the mail API accepted keeps working, and the employee can ask
    again.
    """
    token = secrets.token_urlsafe(32)
    secret_hash = credentials.token_hash(token)
    with ctx.sessions.begin() as session:
        account = session.get(Account, account_id, options=[joinedload(Account.employee)])
        assert account is not None
        employee = account.employee
        username, address = account.username, employee.email
        first_name, last_name = employee.first_name, employee.last_name
        time_zone = employee.time_zone
        link = SetupLink(account_id=account_id, token_hash=secret_hash, expires_at=now + RESET_LINK_TTL)
        session.add(link)
        session.flush()
        link_id = link.id
    assert address is not None
    settings = ctx.settings
    text, html = render_email(
        "password_reset",
        first_name=first_name,
        username=username,
        company=settings.company_name,
        sign_in_url=settings.sign_in_url,
        setup_url=settings.setup_link_url(token),
        expires_at=now + RESET_LINK_TTL,
        time_zone=zone_of(time_zone, settings.default_time_zone),
    )
    del token
    email = OutgoingEmail(
        to_address=address,
        to_name=full_name(first_name, last_name),
        subject=f"Reset your {settings.company_name} Self-Service password",
        text=text,
        html=html,
        category="credbot-password-reset",
    )
    try:
        message_id = make_transport(settings).send(email)
    except MailError as error:  # MailUnavailable too: the employee asks again rather than wait for us
        with ctx.sessions.begin() as session:
            credentials.discard(session, account_id, CredentialMode.LINK, secret_hash, None)
            record(
                session,
                portal_user_actor(username),
                AuditAction.RESET_LINK_FAILED,
                account_target(username),
                link_id=link_id,
                error=str(getattr(error, "reason", None) or error)[:500],
                **client.audit(),
            )
        return RecoveryOutcome.RESET_FAILED
    with ctx.sessions.begin() as session:
        session.execute(update(SetupLink).where(SetupLink.id == link_id).values(sent_at=now))
        credentials.revoke_links(session, account_id, now, keep=secret_hash)
        record(
            session,
            portal_user_actor(username),
            AuditAction.RESET_LINK_SENT,
            account_target(username),
            link_id=link_id,
            message_id=message_id,
            **client.audit(),
        )
    return RecoveryOutcome.RESET_SENT


# --- Approval requests, as the admins see and decide them ------------------------------------------------


@dataclass(frozen=True)
class RecoveryCard:
    """What an approving admin sees: whom they approve, how they were emailed, who asked and from where."""

    request_id: int
    status: str
    employee_id: int
    employee_number: str
    name: str
    username: str
    address: str | None
    last_emailed_at: datetime | None
    delivery_state: str
    """The newest delivery's status, and SendGrid's word on it when there is one."""
    requested_at: datetime
    request_count: int
    expires_at: datetime
    client_address: str | None
    user_agent: str | None
    card_channel: str | None
    card_ts: str | None
    decided_by: str | None
    reason: str | None


def card_of(session: Session, request_id: int) -> RecoveryCard | None:
    request = session.get(RecoveryRequest, request_id)
    if request is None:
        return None
    account = request.account
    employee = account.employee
    delivery = session.scalars(
        select(Delivery).where(Delivery.employee_id == employee.id).order_by(Delivery.id.desc()).limit(1)
    ).first()
    state = "never emailed"
    if delivery is not None:
        state = delivery.status
        if delivery.mail_state:
            state += f", {delivery.mail_state}"
            if delivery.mail_reason:
                state += f" ({delivery.mail_reason})"
    return RecoveryCard(
        request_id=request.id,
        status=request.status,
        employee_id=employee.id,
        employee_number=employee.employee_number,
        name=employee.full_name,
        username=account.username,
        address=employee.email,
        last_emailed_at=account.credentials_emailed_at,
        delivery_state=state,
        requested_at=request.requested_at,
        request_count=request.request_count,
        expires_at=request.expires_at,
        client_address=request.client_address,
        user_agent=request.user_agent,
        card_channel=request.card_channel,
        card_ts=request.card_ts,
        decided_by=request.decided_by,
        reason=request.reason,
    )


def cards_to_post(ctx: Context, now: datetime | None = None) -> list[RecoveryCard]:
    """Pending requests whose card is not in Slack yet (the outbox the card poster drains)."""
    now = now or ctx.clock.now()
    with ctx.sessions() as session:
        ids = session.scalars(
            select(RecoveryRequest.id)
            .where(
                RecoveryRequest.status == RecoveryStatus.PENDING,
                RecoveryRequest.card_ts.is_(None),
                RecoveryRequest.expires_at > now,
            )
            .order_by(RecoveryRequest.id)
        ).all()
        return [card for card in (card_of(session, request_id) for request_id in ids) if card]


def card_posted(ctx: Context, request_id: int, channel: str, ts: str) -> None:
    with ctx.sessions.begin() as session:
        session.execute(
            update(RecoveryRequest)
            .where(RecoveryRequest.id == request_id)
            .values(card_channel=channel, card_ts=ts)
        )


def expire_due(ctx: Context, now: datetime | None = None) -> list[RecoveryCard]:
    """Mark the pending requests past their time expired (audited); their cards, to update in Slack."""
    now = now or ctx.clock.now()
    with ctx.sessions.begin() as session:
        due = session.scalars(
            select(RecoveryRequest)
            .where(RecoveryRequest.status == RecoveryStatus.PENDING, RecoveryRequest.expires_at <= now)
            .with_for_update()
        ).all()
        for request in due:
            _expire(session, request)
        session.flush()
        return [card for card in (card_of(session, request.id) for request in due) if card]


class DecisionRefused(Exception):
    """The request cannot be decided any more: already decided, expired, or unknown (a sentence why)."""


def approve(ctx: Context, request_id: int, actor: str, now: datetime | None = None) -> RecoveryCard:
    """Approve: the caller then opens the usual confirmation for the employee, which sends."""
    return _decide_request(ctx, request_id, actor, RecoveryStatus.APPROVED, None, now)


def deny(ctx: Context, request_id: int, actor: str, reason: str, now: datetime | None = None) -> RecoveryCard:
    """Deny with a reason (required: the audit says why)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("Give a reason for denying the request.")
    return _decide_request(ctx, request_id, actor, RecoveryStatus.DENIED, reason[:MAX_REASON], now)


def _decide_request(
    ctx: Context,
    request_id: int,
    actor: str,
    status: RecoveryStatus,
    reason: str | None,
    now: datetime | None,
) -> RecoveryCard:
    now = now or ctx.clock.now()
    with ctx.sessions.begin() as session:
        request = session.get(RecoveryRequest, request_id, with_for_update=True)
        refusal = _refusal(session, request, now)
        if request is None or refusal:
            card = None
        else:
            request.status, request.decided_by, request.decided_at = status, actor, now
            request.reason = reason
            approved = status is RecoveryStatus.APPROVED
            record(
                session,
                actor,
                AuditAction.RECOVERY_APPROVED if approved else AuditAction.RECOVERY_DENIED,
                account_target(request.account.username),
                request_id=request.id,
                **({"reason": reason} if reason else {}),
            )
            session.flush()
            card = card_of(session, request.id)
    if card is None:
        raise DecisionRefused(refusal or "I cannot find that recovery request any more.")
    return card


def _refusal(session: Session, request: RecoveryRequest | None, now: datetime) -> str | None:
    """Why the request cannot be decided (None: it can); one past its time is marked expired here."""
    if request is None:
        return "I cannot find that recovery request any more."
    if request.status == RecoveryStatus.PENDING and request.expires_at <= now:
        _expire(session, request)
    if request.status == RecoveryStatus.PENDING:
        return None
    by = f" by {request.decided_by}" if request.decided_by else ""
    return f"This recovery request was already {request.status}{by}; nothing was changed."
