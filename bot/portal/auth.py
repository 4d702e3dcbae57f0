"""Portal sign-in, password change and set-password links, without any web framework.

Every sign-in attempt does the same work whether the user exists, is locked, is disabled or typed a
wrong password: one conditional UPDATE that counts the attempt, one SELECT, two password
verifications and one audit INSERT, so that neither the message nor the timing tells them apart.

Failed attempts are throttled, as OWASP's authentication guidance recommends, rather than locked out
for long: from LOCKOUT_THRESHOLD consecutive failures on, each failure makes the account wait
LOCKOUT_DELAY_SECONDS, doubling with every further failure up to LOCKOUT_MINUTES. Attempts during a
wait are refused without being checked or counted, so a stranger cannot extend it by hammering; the
per-client rate limit (bot.portal.limits) stops one source from trying many accounts. An attempt is
counted *before* its password is verified, in one atomic UPDATE that also starts the wait, so
parallel attempts cannot slip past the threshold.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from bot import credentials
from bot.accounts import is_locked
from bot.audit import (
    PORTAL_ACTOR,
    PORTAL_UNKNOWN_USER_ACTOR,
    AuditAction,
    account_target,
    portal_user_actor,
    record,
)
from bot.context import Context
from bot.notices import enqueue_notice
from bot.passwords import hash_password, needs_rehash, verify_password
from bot.portal.client import NO_CLIENT, Client
from bot.portal.password_rules import normalize_password, password_problems
from bot.settings import Settings
from models import Account, AccountStatus, CredentialMode, SetupLink, full_name, rowcount

log = logging.getLogger(__name__)

"""The audit actor of a failed sign-in with an unknown username: what was typed is not kept, as it is
sometimes the password typed into the wrong field."""
MAX_USERNAME = 100
"""Typed usernames longer than this cannot exist."""
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
    session_version: int | None = None
    """The account's session version after this sign-in, for the session cookie."""
    previous_sign_in: datetime | None = None
    """When the account was signed in to before this sign-in (None: this is the first)."""


@dataclass(frozen=True)
class PasswordChange:
    """Result of a password change: `problems` says what to fix; empty means it was changed."""

    problems: list[str]
    session_version: int | None = None
    """The account's new session version: every older session has ended."""
    fields: set[str] = field(default_factory=set)
    """The form fields the problems are about: current_password, new_password, confirm_password."""
    locked_until: datetime | None = None
    """Set when this attempt's wrong current password made the account wait."""

    @property
    def ok(self) -> bool:
        return not self.problems


def lock_delay(settings: Settings, failures: int) -> timedelta | None:
    """How long an account waits after `failures` consecutive failures (None: not at all)."""
    over = failures - settings.lockout_threshold
    if over < 0:
        return None
    cap = timedelta(minutes=settings.lockout_minutes)
    return min(timedelta(seconds=settings.lockout_delay_seconds * 2 ** min(over, 30)), cap)


@dataclass(frozen=True)
class _Attempt:
    """What counting an attempt found: None fields when the account was waiting (or is unknown)."""

    failures: int | None
    locked_until: datetime | None


def _count_attempt(
    session: Session, where: ColumnElement[bool], settings: Settings, now: datetime
) -> _Attempt:
    """Count one attempt and start the account's wait when due, in one atomic conditional UPDATE.

    Accounts already waiting are left alone (the attempt is refused unchecked). The count is reset
    when the password turns out right; when it turns out wrong, `_start_wait` ends the sessions.
    """
    failures = Account.failed_login_count + 1
    steps: list[tuple[ColumnElement[bool], datetime | None]] = [(failures < settings.lockout_threshold, None)]
    n, cap = settings.lockout_threshold, timedelta(minutes=settings.lockout_minutes)
    while (delay := lock_delay(settings, n)) is not None and delay < cap:
        steps.append((failures == n, now + delay))
        n += 1
    locked_until = case(*steps, else_=now + cap)
    row = session.execute(
        update(Account)
        .where(where, or_(Account.locked_until.is_(None), Account.locked_until <= now))
        .values(
            failed_login_count=failures,
            locked_until=locked_until,
        )
        .returning(Account.failed_login_count, Account.locked_until)
        .execution_options(synchronize_session=False)
    ).first()
    return _Attempt(row.failed_login_count, row.locked_until) if row else _Attempt(None, None)


def _username_matches(username: str) -> ColumnElement[bool]:
    return func.lower(Account.username) == username.lower()


def _typed_username(username: str) -> str:
    """The typed username, or "" when it cannot be one (PostgreSQL refuses NUL characters)."""
    username = username.strip()
    if not username or len(username) > MAX_USERNAME or not username.isprintable():
        return ""
    return username


def find_account(session: Session, username: str) -> Account | None:
    """The account with this username (case-insensitive), with its employee (one query)."""
    query = select(Account).where(_username_matches(username)).options(joinedload(Account.employee))
    return session.scalars(query).first()


def can_sign_in(account: Account) -> bool:
    """False for disabled accounts (or an account whose employee has left)."""
    return account.status != AccountStatus.DISABLED and account.employee.active


def sign_in(
    ctx: Context, username: str, password: str, now: datetime | None = None, client: Client = NO_CLIENT
) -> SignInResult:
    """Check a username and password, applying throttling, expiry and pending-password promotion."""
    now = now or ctx.clock.now()
    password = normalize_password(password[:MAX_TYPED_PASSWORD])
    username = _typed_username(username)
    with ctx.sessions.begin() as session:
        attempt = _count_attempt(session, _username_matches(username), ctx.settings, now)
        account = find_account(session, username)
        snapshot = _Snapshot.of(account, now)
    current_ok, pending_ok = _verify_twice(password, snapshot.password_hash, snapshot.pending_hash)

    with ctx.sessions.begin() as session:
        if account is None:
            return _refuse(session, None, FailureReason.UNKNOWN_USER, client)
        if attempt.failures is None or account.status == AccountStatus.LOCKED:
            return _refuse(session, account, FailureReason.LOCKED, client)
        if not snapshot.can_sign_in:
            return _refuse(session, account, FailureReason.DISABLED, client)
        if not (current_ok or pending_ok):
            result = _refuse(session, account, FailureReason.WRONG_PASSWORD, client)
            _start_wait(session, account, attempt, client)
            return result
        account = session.get(Account, account.id, with_for_update=True, populate_existing=True)
        if (
            account is None
            or account.password_hash != snapshot.password_hash
            or (not current_ok and account.pending_password_hash != snapshot.pending_hash)
        ):
            return _refuse(session, account, FailureReason.WRONG_PASSWORD, client)  # changed meanwhile
        account.failed_login_count = 0
        account.locked_until = None
        if pending_ok and not current_ok:
            # The mail API accepted the email (the employee has it), but the send did not get to promote.
            pending, expires_at = account.pending_password_hash, account.pending_password_expires_at
            assert pending is not None
            credentials.promote(session, account.id, CredentialMode.PASSWORD, pending, expires_at, now=now)
            session.refresh(account)
            log.info("promoted the pending temporary password of account %s at sign-in", account.id)

        if account.must_change_password and (
            account.temp_password_expires_at is None or account.temp_password_expires_at <= now
        ):
            return _refuse(session, account, FailureReason.EXPIRED, client, SignInOutcome.EXPIRED)

        assert account.password_hash is not None
        if needs_rehash(account.password_hash):
            account.password_hash = hash_password(password)
        previous = account.last_login_at
        _mark_signed_in(session, account, now, client)
        outcome = SignInOutcome.MUST_CHANGE if account.must_change_password else SignInOutcome.OK
        return SignInResult(outcome, account.id, account.session_version, previous)


@dataclass(frozen=True)
class _Snapshot:
    """What the verification needs, read in the counting transaction (dummies for unknown users)."""

    password_hash: str | None = None
    pending_hash: str | None = None
    can_sign_in: bool = False

    @classmethod
    def of(cls, account: Account | None, now: datetime) -> _Snapshot:
        if account is None:
            return cls()
        pending = credentials.usable_pending(account, now)
        return cls(account.password_hash, pending, can_sign_in(account))


def _verify_twice(password: str, first: str | None, second: str | None) -> tuple[bool, bool]:
    """Verify against both hashes (a dummy hash stands in for a missing one): the same work every time."""
    return verify_password(password, first), verify_password(password, second)


def _mark_signed_in(session: Session, account: Account, now: datetime, client: Client) -> None:
    account.failed_login_count = 0
    account.locked_until = None
    account.last_login_at = now
    if account.first_sign_in_at is None:
        account.first_sign_in_at = now
    record(
        session, portal_user_actor(account.username), AuditAction.SIGN_IN, _target(account), **client.audit()
    )


def _target(account: Account) -> str:
    return account_target(account.username)


def _refuse(
    session: Session,
    account: Account | None,
    reason: FailureReason,
    client: Client,
    outcome: SignInOutcome = SignInOutcome.REFUSED,
) -> SignInResult:
    actor, target = (
        (portal_user_actor(account.username), _target(account))
        if account
        else (PORTAL_UNKNOWN_USER_ACTOR, None)
    )
    record(session, actor, AuditAction.SIGN_IN_FAILED, target, reason=str(reason), **client.audit())
    return SignInResult(outcome, account.id if account else None)


def _start_wait(session: Session, account: Account, attempt: _Attempt, client: Client) -> None:
    """When a failed attempt made the account wait: end its sessions (every copy of every cookie)
    and audit the wait."""
    if attempt.locked_until is None:
        return
    session.execute(
        update(Account)
        .where(Account.id == account.id)
        .values(session_version=Account.session_version + 1)
        .execution_options(synchronize_session=False)
    )
    record(
        session,
        PORTAL_ACTOR,
        AuditAction.ACCOUNT_LOCKED,
        _target(account),
        failed_attempts=attempt.failures,
        locked_until=attempt.locked_until.isoformat(),
        **client.audit(),
    )
    log.warning(
        "account %s waits until %s after %s failures", account.id, attempt.locked_until, attempt.failures
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
    department: str | None = None
    manager: str | None = None
    """The manager's name."""
    password_changed_at: datetime | None = None
    time_zone: str | None = None
    """The employee's IANA zone (None: DEFAULT_TIME_ZONE): the portal shows times in it."""

    @property
    def full_name(self) -> str:
        return full_name(self.first_name, self.last_name)


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
        department=account.employee.department,
        manager=manager.full_name if (manager := account.employee.manager_employee) else None,
        password_changed_at=account.password_changed_at,
        time_zone=account.employee.time_zone,
    )


def signed_in_user(
    ctx: Context, account_id: int, session_version: int, now: datetime | None = None
) -> PortalUser | None:
    """The employee a session belongs to, or None if the session is void.

    A session is void once the account's session version moved on (sign-out, password change, a wait
    after failed attempts, an administrator ending its sessions), or while it is disabled or waiting.
    """
    now = now or ctx.clock.now()
    with ctx.sessions() as session:
        account = load_account(session, account_id)
        if account is None or account.session_version != session_version or not can_sign_in(account):
            return None
        if is_locked(account, now):
            return None
        return _view(account)


def sign_out(ctx: Context, account_id: int, session_version: int, client: Client = NO_CLIENT) -> None:
    """End every session of the account (each copy of every cookie), and audit the sign-out."""
    with ctx.sessions.begin() as session:
        ended = session.execute(
            update(Account)
            .where(Account.id == account_id, Account.session_version == session_version)
            .values(session_version=Account.session_version + 1)
            .returning(Account.username)
        ).first()
        if ended is not None:
            record(
                session,
                portal_user_actor(ended.username),
                AuditAction.SIGN_OUT,
                account_target(ended.username),
                **client.audit(),
            )


# --- Changing the password ----------------------------------------------------------------------------

WRONG_CURRENT_PASSWORD = "Your current password is not correct. Type the password you signed in with."  # noqa: S105


def change_password(
    ctx: Context,
    account_id: int,
    current_password: str | None,
    new_password: str,
    confirmation: str,
    now: datetime | None = None,
    client: Client = NO_CLIENT,
) -> PasswordChange:
    """Replace the password after checking the current one and the rules; ends the temporary password.

    `current_password` None: the session proved it moments ago (signing in with the temporary password),
    so it is not asked again; the new password must still differ from it.
    A wrong current password counts as a failed sign-in; when it makes the account wait, the result
    says until when (`locked_until`) and the account's sessions have ended.
    """
    now = now or ctx.clock.now()
    if current_password is None:
        return _change_proven(ctx, account_id, new_password, confirmation, now, client)
    current = normalize_password(current_password[:MAX_TYPED_PASSWORD])
    with ctx.sessions.begin() as session:
        attempt = _count_attempt(session, Account.id == account_id, ctx.settings, now)
        account = load_account(session, account_id)
        password_hash = account.password_hash if account else None
    if account is None or attempt.failures is None:
        return PasswordChange([SESSION_ENDED], fields={"current_password"})
    current_ok = verify_password(current, password_hash)
    with ctx.sessions.begin() as session:
        account = load_account(session, account_id)
        assert account is not None
        if not current_ok:
            record(
                session,
                portal_user_actor(account.username),
                AuditAction.SIGN_IN_FAILED,
                _target(account),
                reason="wrong_current_password",
                **client.audit(),
            )
            _start_wait(session, account, attempt, client)
            return PasswordChange(
                [WRONG_CURRENT_PASSWORD], fields={"current_password"}, locked_until=attempt.locked_until
            )
        account.failed_login_count = 0
        account.locked_until = None
        problems, fields = _new_password_problems(ctx, account, new_password, confirmation, current)
        if problems:
            return PasswordChange(problems, fields=fields)
        _set_password(session, account, new_password, now, client)
        session.flush()
        return PasswordChange([], account.session_version)


SESSION_ENDED = "Your session has ended. Sign in again."


def _change_proven(
    ctx: Context, account_id: int, new_password: str, confirmation: str, now: datetime, client: Client
) -> PasswordChange:
    """The change right after signing in with the temporary password (the caller checked the window)."""
    with ctx.sessions.begin() as session:
        account = load_account(session, account_id)
        if account is None or not can_sign_in(account) or is_locked(account, now):
            return PasswordChange([SESSION_ENDED])
        problems, fields = _new_password_problems(ctx, account, new_password, confirmation, None)
        if not problems and verify_password(normalize_password(new_password), account.password_hash):
            problems.append("Choose a password different from your current (temporary) password.")
            fields.add("new_password")
        if problems:
            return PasswordChange(problems, fields=fields)
        _set_password(session, account, new_password, now, client)
        session.flush()
        return PasswordChange([], account.session_version)


def _new_password_problems(
    ctx: Context, account: Account, new_password: str, confirmation: str, current: str | None
) -> tuple[list[str], set[str]]:
    """The problems with the new password, and the fields they are about."""
    problems = password_problems(
        new_password,
        min_length=ctx.settings.password_min_length,
        username=account.username,
        first_name=account.employee.first_name,
        last_name=account.employee.last_name,
        current_password=current,
        extra_words=[ctx.settings.company_name],
    )
    fields = {"new_password"} if problems else set()
    if normalize_password(new_password) != normalize_password(confirmation):
        problems.append("The two new passwords do not match. Type the same password in both fields.")
        fields.add("confirm_password")
    return problems, fields


def _set_password(
    session: Session, account: Account, new_password: str, now: datetime, client: Client
) -> None:
    """Store the new password; the temporary password, pending password and open links stop working,
    and every session ends."""
    credentials.set_password(session, account.id, hash_password(normalize_password(new_password)), now)
    session.refresh(account)
    record(
        session,
        portal_user_actor(account.username),
        AuditAction.PASSWORD_CHANGED,
        _target(account),
        **client.audit(),
    )


# --- Set-password links (CREDENTIAL_MODE=link) --------------------------------------------------------


class SetupLinkInvalid(Exception):
    """The link is unknown, used, revoked or expired, or its account cannot sign in."""


def _usable_link(session: Session, link: SetupLink | None, now: datetime) -> SetupLink:
    if link is None or link.used_at is not None or link.revoked_at is not None or link.expires_at <= now:
        raise SetupLinkInvalid
    account = load_account(session, link.account_id)
    if account is None or not can_sign_in(account):
        raise SetupLinkInvalid
    return link


def open_setup_link(ctx: Context, token: str, now: datetime | None = None) -> int:
    """The id of the usable link for `token`; raises SetupLinkInvalid. Does not use the link up."""
    now = now or ctx.clock.now()
    with ctx.sessions() as session:
        link = session.scalars(
            select(SetupLink).where(SetupLink.token_hash == credentials.token_hash(token))
        ).first()
        try:
            return _usable_link(session, link, now).id
        except SetupLinkInvalid:
            log.info("refused a set-password link (link id %s)", link.id if link else "unknown")
            raise


def setup_link_user(ctx: Context, link_id: int, now: datetime | None = None) -> PortalUser:
    """The employee a still-usable link belongs to; raises SetupLinkInvalid."""
    now = now or ctx.clock.now()
    with ctx.sessions() as session:
        link = _usable_link(session, session.get(SetupLink, link_id), now)
        return _view(link.account)


def set_password_with_link(
    ctx: Context,
    link_id: int,
    new_password: str,
    confirmation: str,
    now: datetime | None = None,
    client: Client = NO_CLIENT,
) -> PasswordChange:
    """Set the password through a link and sign in; the link is used up only when this succeeds.

    Raises SetupLinkInvalid if the link stopped being usable (e.g. used in another tab meanwhile).
    """
    now = now or ctx.clock.now()
    with ctx.sessions.begin() as session:
        link = _usable_link(session, session.get(SetupLink, link_id), now)
        account = link.account
        problems, fields = _new_password_problems(ctx, account, new_password, confirmation, None)
        if not problems and verify_password(normalize_password(new_password), account.password_hash):
            problems.append("Choose a password different from your current password.")
            fields.add("new_password")
        if problems:
            return PasswordChange(problems, fields=fields)
        used = session.execute(
            update(SetupLink)
            .where(SetupLink.id == link.id, SetupLink.used_at.is_(None), SetupLink.revoked_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(used) != 1:
            raise SetupLinkInvalid
        record(
            session,
            portal_user_actor(account.username),
            AuditAction.SETUP_LINK_USED,
            _target(account),
            link_id=link.id,
            **client.audit(),
        )
        _set_password(session, account, new_password, now, client)
        _mark_signed_in(session, account, now, client)
        session.flush()
        return PasswordChange([], account.session_version)


# --- The "your password was changed" email ------------------------------------------------------------


def notify_password_changed(ctx: Context, account_id: int, now: datetime | None = None) -> None:
    """Queue the "your password was changed" email; a worker sends it (never inside the request)."""
    enqueue_notice(
        ctx,
        account_id,
        "password_changed",
        "Your {company} Self-Service password was changed",
        failure_action=AuditAction.PASSWORD_CHANGE_NOTICE_FAILED,
        changed_at=now or ctx.clock.now(),
    )
