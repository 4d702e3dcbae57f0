"""Portal sign-in, password change and set-password links, without any web framework.

Every sign-in attempt costs the same two password verifications, whether the user exists, is locked,
is disabled or typed a wrong password, so that neither the message nor the timing tells them apart.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from bot.audit import AuditAction, record
from bot.context import Context
from bot.notices import enqueue_notice
from bot.passwords import hash_password, needs_rehash, verify_password
from bot.portal.password_rules import normalize_password, password_problems
from models import Account, AccountStatus, SetupLink, utcnow

log = logging.getLogger(__name__)

UNKNOWN_USER_ACTOR = "portal:unknown-user"
"""The audit actor of a failed sign-in with an unknown username: what was typed is not kept, as it is
sometimes the password typed into the wrong field."""
"""Typed usernames are cut to this length in the audit log."""
MAX_USERNAME = 100
MAX_TYPED_PASSWORD = 1024
"""Longer input cannot be a valid password (at most 128 characters); it is cut before hashing."""


class SignInOutcome(enum.StrEnum):
    OK = "ok"
    MUST_CHANGE = "must_change"
    """Right temporary password: the employee must choose a new one before anything else."""
    EXPIRED = "expired"
    """Right temporary password, but it has expired: an administrator must send new credentials."""
    REFUSED = "refused"
    """Unknown user, wrong password, locked or disabled account: one answer for all."""


class FailureReason(enum.StrEnum):
    UNKNOWN_USER = "unknown_user"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a reason, not a password)
    LOCKED = "locked"
    DISABLED = "disabled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class SignInResult:
    outcome: SignInOutcome
    account_id: int | None = None
    password_hash: str | None = None
    """The hash that signed in, to derive the session marker (see `session_marker`)."""


@dataclass(frozen=True)
class PasswordChange:
    """Result of a password change: `problems` says what to fix; empty means it was changed."""

    problems: list[str]
    password_hash: str | None = None
    """The new hash, to derive the new session marker."""

    @property
    def ok(self) -> bool:
        return not self.problems


def session_marker(password_hash: str | None, key: str | bytes) -> str:
    """A keyed digest of the current password hash: sessions carrying an older one are void."""
    key_bytes = key.encode() if isinstance(key, str) else key
    return hmac.new(key_bytes, (password_hash or "").encode(), hashlib.sha256).hexdigest()[:32]


def find_account(session: Session, username: str) -> Account | None:
    """The account with this username (case-insensitive), with its employee and roles."""
    username = username.strip()
    if not username or len(username) > MAX_USERNAME or not username.isprintable():
        return None  # cannot be a username (and PostgreSQL refuses NUL characters)
    query = (
        select(Account)
        .where(func.lower(Account.username) == username.lower())
        .options(selectinload(Account.employee), selectinload(Account.roles))
    )
    return session.scalars(query).first()


def can_sign_in(account: Account) -> bool:
    """False for disabled accounts (or an account whose employee has left)."""
    return account.status != AccountStatus.DISABLED and account.employee.active


def sign_in(ctx: Context, username: str, password: str, now: datetime | None = None) -> SignInResult:
    """Check a username and password, applying lockout, expiry and pending-password promotion."""
    now = now or utcnow()
    password = normalize_password(password[:MAX_TYPED_PASSWORD])
    with ctx.sessions.begin() as session:
        account = find_account(session, username)
        if account is None:
            _verify_twice(password, None, None)
            return _refuse(session, None, FailureReason.UNKNOWN_USER)

        _end_expired_lock(account, now)
        if is_locked(account, now):
            _verify_twice(password, None, None)
            return _refuse(session, account, FailureReason.LOCKED)
        if not can_sign_in(account):
            _verify_twice(password, None, None)
            return _refuse(session, account, FailureReason.DISABLED)

        pending = account.pending_password_hash
        if account.pending_password_expires_at is None or account.pending_password_expires_at <= now:
            pending = None
        current_ok, pending_ok = _verify_twice(password, account.password_hash, pending)
        if not (current_ok or pending_ok):
            result = _refuse(session, account, FailureReason.WRONG_PASSWORD)
            count_failure(ctx, session, account, now)
            return result
        if pending_ok and not current_ok:
            _promote_pending(account)

        if account.must_change_password and (
            account.temp_password_expires_at is None or account.temp_password_expires_at <= now
        ):
            return _refuse(session, account, FailureReason.EXPIRED, SignInOutcome.EXPIRED)

        assert account.password_hash is not None
        if needs_rehash(account.password_hash):
            account.password_hash = hash_password(password)
        _mark_signed_in(session, account, now)
        outcome = SignInOutcome.MUST_CHANGE if account.must_change_password else SignInOutcome.OK
        return SignInResult(outcome, account.id, account.password_hash)


def _verify_twice(password: str, first: str | None, second: str | None) -> tuple[bool, bool]:
    """Verify against both hashes (a dummy hash stands in for a missing one): the same work every time."""
    return verify_password(password, first), verify_password(password, second)


def _end_expired_lock(account: Account, now: datetime) -> None:
    if account.locked_until is not None and account.locked_until <= now:
        account.locked_until = None
        account.failed_login_count = 0


def is_locked(account: Account, now: datetime) -> bool:
    """True while a lockout runs, or when the status says locked."""
    running = account.locked_until is not None and account.locked_until > now
    return running or account.status == AccountStatus.LOCKED


def _promote_pending(account: Account) -> None:
    """The mail API accepted the temporary password but the send did not get to promote it: do it now."""
    account.password_hash = account.pending_password_hash
    account.temp_password_expires_at = account.pending_password_expires_at
    account.must_change_password = True
    if account.status == AccountStatus.PENDING:
        account.status = AccountStatus.INVITED
    account.pending_password_hash = None
    account.pending_password_expires_at = None
    log.info("promoted the pending temporary password of account %s at sign-in", account.id)


def _mark_signed_in(session: Session, account: Account, now: datetime) -> None:
    account.failed_login_count = 0
    account.locked_until = None
    account.last_login_at = now
    record(session, account.username, AuditAction.SIGN_IN, _target(account))


def _target(account: Account) -> str:
    return f"account:{account.username}"


def _refuse(
    session: Session,
    account: Account | None,
    reason: FailureReason,
    outcome: SignInOutcome = SignInOutcome.REFUSED,
) -> SignInResult:
    actor, target = (account.username, _target(account)) if account else (UNKNOWN_USER_ACTOR, None)
    record(session, actor, AuditAction.SIGN_IN_FAILED, target, reason=str(reason))
    return SignInResult(outcome, account.id if account else None)


def count_failure(ctx: Context, session: Session, account: Account, now: datetime) -> None:
    """Count a failed attempt (atomically) and lock the account when it reaches LOCKOUT_THRESHOLD."""
    settings = ctx.settings
    session.flush()
    count = session.execute(
        update(Account)
        .where(Account.id == account.id)
        .values(failed_login_count=Account.failed_login_count + 1)
        .returning(Account.failed_login_count)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    account.failed_login_count = count
    if count >= settings.lockout_threshold:
        account.locked_until = now + timedelta(minutes=settings.lockout_minutes)
        record(
            session,
            "portal",
            AuditAction.ACCOUNT_LOCKED,
            _target(account),
            failed_attempts=count,
            locked_until=account.locked_until.isoformat(),
        )
        log.warning(
            "account %s locked for %s minutes after %s failures", account.id, settings.lockout_minutes, count
        )


# --- The signed-in employee ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalUser:
    """What the portal knows and shows about the signed-in employee."""

    account_id: int
    username: str
    first_name: str
    last_name: str
    roles: list[str]
    must_change_password: bool
    password_hash: str | None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


def load_account(session: Session, account_id: int) -> Account | None:
    """The account with its employee and roles."""
    options = [selectinload(Account.employee), selectinload(Account.roles)]
    return session.get(Account, account_id, options=options)


def _view(account: Account) -> PortalUser:
    return PortalUser(
        account_id=account.id,
        username=account.username,
        first_name=account.employee.first_name,
        last_name=account.employee.last_name,
        roles=[role.name for role in account.roles],
        must_change_password=account.must_change_password,
        password_hash=account.password_hash,
    )


def signed_in_user(
    ctx: Context, account_id: int, marker: str, key: str | bytes, now: datetime | None = None
) -> PortalUser | None:
    """The employee a session belongs to, or None if the session is void.

    A session is void once the account is disabled or locked, or its password changed since sign-in.
    """
    now = now or utcnow()
    with ctx.sessions() as session:
        account = load_account(session, account_id)
        if account is None or not can_sign_in(account):
            return None
        if is_locked(account, now):
            return None
        if not hmac.compare_digest(marker, session_marker(account.password_hash, key)):
            return None
        return _view(account)


def record_sign_out(ctx: Context, account_id: int) -> None:
    """Audit a sign-out."""
    with ctx.sessions.begin() as session:
        account = session.get(Account, account_id)
        if account is not None:
            record(session, account.username, AuditAction.SIGN_OUT, _target(account))


# --- Changing the password ----------------------------------------------------------------------------


def change_password(
    ctx: Context,
    account_id: int,
    current_password: str,
    new_password: str,
    confirmation: str,
    now: datetime | None = None,
) -> PasswordChange:
    """Replace the password after checking the current one and the rules; ends the temporary password."""
    now = now or utcnow()
    current = normalize_password(current_password[:MAX_TYPED_PASSWORD])
    with ctx.sessions.begin() as session:
        account = load_account(session, account_id)
        if account is None:
            return PasswordChange(["Your session has ended. Sign in again."])
        if not verify_password(current, account.password_hash):
            record(
                session,
                account.username,
                AuditAction.SIGN_IN_FAILED,
                _target(account),
                reason="wrong_current_password",
            )
            count_failure(ctx, session, account, now)
            return PasswordChange(
                ["Your current password is not correct. Type the password you signed in with."]
            )
        problems = _new_password_problems(ctx, account, new_password, confirmation, current)
        if problems:
            return PasswordChange(problems)
        _set_password(session, account, new_password, now)
        return PasswordChange([], account.password_hash)


def _new_password_problems(
    ctx: Context, account: Account, new_password: str, confirmation: str, current: str | None
) -> list[str]:
    problems = password_problems(
        new_password,
        min_length=ctx.settings.password_min_length,
        username=account.username,
        first_name=account.employee.first_name,
        last_name=account.employee.last_name,
        current_password=current,
        extra_words=[ctx.settings.company_name],
    )
    if normalize_password(new_password) != normalize_password(confirmation):
        problems.append("The two new passwords do not match. Type the same password in both fields.")
    return problems


def _set_password(session: Session, account: Account, new_password: str, now: datetime) -> None:
    """Store the new password; the temporary password, pending password and open links stop working."""
    account.password_hash = hash_password(normalize_password(new_password))
    account.must_change_password = False
    account.temp_password_expires_at = None
    account.pending_password_hash = None
    account.pending_password_expires_at = None
    account.password_changed_at = now
    account.failed_login_count = 0
    account.locked_until = None
    account.status = AccountStatus.ACTIVE
    session.execute(
        update(SetupLink)
        .where(
            SetupLink.account_id == account.id, SetupLink.used_at.is_(None), SetupLink.revoked_at.is_(None)
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    record(session, account.username, AuditAction.PASSWORD_CHANGED, _target(account))


# --- Set-password links (CREDENTIAL_MODE=link) --------------------------------------------------------


class SetupLinkInvalid(Exception):
    """The link is unknown, used, revoked or expired, or its account cannot sign in."""


def setup_token_hash(token: str) -> str:
    """What `SetupLink.token_hash` holds for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def _usable_link(session: Session, link: SetupLink | None, now: datetime) -> SetupLink:
    if link is None or link.used_at is not None or link.revoked_at is not None or link.expires_at <= now:
        raise SetupLinkInvalid
    account = load_account(session, link.account_id)
    if account is None or not can_sign_in(account):
        raise SetupLinkInvalid
    return link


def open_setup_link(ctx: Context, token: str, now: datetime | None = None) -> int:
    """The id of the usable link for `token`; raises SetupLinkInvalid. Does not use the link up."""
    now = now or utcnow()
    with ctx.sessions() as session:
        link = session.scalars(
            select(SetupLink).where(SetupLink.token_hash == setup_token_hash(token))
        ).first()
        try:
            return _usable_link(session, link, now).id
        except SetupLinkInvalid:
            log.info("refused a set-password link (link id %s)", link.id if link else "unknown")
            raise


def setup_link_user(ctx: Context, link_id: int, now: datetime | None = None) -> PortalUser:
    """The employee a still-usable link belongs to; raises SetupLinkInvalid."""
    now = now or utcnow()
    with ctx.sessions() as session:
        link = _usable_link(session, session.get(SetupLink, link_id), now)
        return _view(link.account)


def set_password_with_link(
    ctx: Context, link_id: int, new_password: str, confirmation: str, now: datetime | None = None
) -> PasswordChange:
    """Set the password through a link and sign in; the link is used up only when this succeeds.

    Raises SetupLinkInvalid if the link stopped being usable (e.g. used in another tab meanwhile).
    """
    now = now or utcnow()
    with ctx.sessions.begin() as session:
        link = _usable_link(session, session.get(SetupLink, link_id), now)
        account = link.account
        problems = _new_password_problems(ctx, account, new_password, confirmation, None)
        if not problems and verify_password(normalize_password(new_password), account.password_hash):
            problems.append("Choose a password different from your current password.")
        if problems:
            return PasswordChange(problems)
        used = session.execute(
            update(SetupLink)
            .where(SetupLink.id == link.id, SetupLink.used_at.is_(None), SetupLink.revoked_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if used.rowcount != 1:
            raise SetupLinkInvalid
        record(session, account.username, AuditAction.SETUP_LINK_USED, _target(account), link_id=link.id)
        _set_password(session, account, new_password, now)
        _mark_signed_in(session, account, now)
        return PasswordChange([], account.password_hash)


# --- The "your password was changed" email ------------------------------------------------------------


def notify_password_changed(ctx: Context, account_id: int, now: datetime | None = None) -> None:
    """Queue the "your password was changed" email; a worker sends it (never inside the request)."""
    enqueue_notice(
        ctx,
        account_id,
        "password_changed",
        "Your {company} Self-Service password was changed",
        failure_action=AuditAction.PASSWORD_CHANGE_NOTICE_FAILED,
        changed_at=now or utcnow(),
    )
