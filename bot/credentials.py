"""Emailing one-time credentials: who can be mailed, batches, and the concurrent sender.

Per employee (one worker thread, three short transactions of its own):

1. Make the credential: a temporary password, or in link mode a set-password token.
2. Re-check that the employee can be mailed (otherwise the delivery is SKIPPED with the reason), store
   only the credential's hash as *pending* (or an unsent SetupLink) and COMMIT, so that an emailed
   credential always works.
3. Hand the welcome email to the transport; drop the plaintext right after.
   Refused: the delivery FAILS with the API's reason, the pending hash is cleared (the link revoked), and
   the current password stays as it was, so an earlier emailed password keeps working.
4. Accepted: promote the pending hash to the account's password (`must_change_password`, expiry,
   status `invited`), mark when and by whom credentials were emailed, revoke older unused links.
5. Send the username email. If that one fails, the delivery FAILS with an error saying the welcome email
   went out and its credential works, but the username email did not: send again to deliver both.

A 401/403 from the mail API (MailAuthError) stops the whole batch: no further API calls; deliveries
not started yet are SKIPPED with the reason, and the batch ends ABORTED with that one error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Select, case, func, null, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from bot.audit import AuditAction, record
from bot.context import Context
from bot.mail import MailAuthError, MailError, MailTransport, OutgoingEmail, make_transport, render_email
from bot.passwords import generate_temporary_password, hash_password
from models import (
    Account,
    AccountStatus,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    SetupLink,
    utcnow,
)

log = logging.getLogger(__name__)

# Plain Core tables for the per-employee updates: ORM-enabled UPDATEs cost several times more CPU.
_ACCOUNTS = Account.__table__
_LINKS = SetupLink.__table__
_DELIVERIES = Delivery.__table__

NO_ACCOUNT = "no account"
NO_ADDRESS = "no address"
INVALID_ADDRESS = "invalid address"
ACCOUNT_DISABLED = "account disabled"
EMPLOYEE_INACTIVE = "employee inactive"
ADDRESS_CHANGED = "address changed since the batch was confirmed"
INTERRUPTED = "interrupted (Ctrl-C)"

WELCOME_CATEGORY = "credbot-welcome"
USERNAME_CATEGORY = "credbot-username"

_CHUNK = 500
_hash_pool_lock = threading.Lock()
_hash_pool: ThreadPoolExecutor | None = None


def _hash(password: str) -> str:
    """hash_password on a pool of one thread per core.

    Argon2id takes 19 MiB and 25-35 ms of CPU per hash: more hashes at once than cores only cost memory,
    and glibc keeps those 19 MiB resident in each thread's arena once freed. The mail workers mostly
    wait on HTTP, so there are many more of them.
    """
    global _hash_pool
    with _hash_pool_lock:
        if _hash_pool is None:
            _hash_pool = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 2, thread_name_prefix="credbot-hash"
            )
    return _hash_pool.submit(hash_password, password).result()


@dataclass(frozen=True)
class Recipient:
    """One line of the confirmation list (CLI and Slack)."""

    employee_id: int
    employee_number: str
    name: str
    username: str | None
    """None: no account."""
    address: str | None
    """The exact normalised address both emails go to."""
    problem: str | None
    """Why they cannot be mailed; None when mailable."""
    last_emailed_at: datetime | None
    address_warning: str | None = None
    """E.g. `bounced on 25 Nov 2026: the mailbox does not exist`: SendGrid's events flagged this address."""


class DuplicateBatchError(Exception):
    """A batch with this idempotency key exists already."""

    def __init__(self, batch_id: int) -> None:
        super().__init__(f"credential batch {batch_id} was already started with this idempotency key")
        self.batch_id = batch_id


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: int
    employee_number: str
    name: str
    username: str | None
    address: str | None
    status: DeliveryStatus
    error: str | None


@dataclass(frozen=True)
class BatchSummary:
    batch_id: int
    status: BatchStatus
    sent: list[DeliveryOutcome]
    failed: list[DeliveryOutcome]
    skipped: list[DeliveryOutcome]
    error: str | None
    """Batch-level error, e.g. the mail API refused the API key."""


# --- who can be mailed -------------------------------------------------------------------------------------


def normalise_address(raw: str | None) -> tuple[str | None, str | None]:
    """(normalised address, None) or (None, problem), checked with email-validator without DNS."""
    if not raw or not raw.strip():
        return None, NO_ADDRESS
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized, None
    except EmailNotValidError as error:
        return None, f"{INVALID_ADDRESS}: {error}"


def _recipient(employee: Employee) -> Recipient:
    account = employee.account
    address, address_problem = normalise_address(employee.email)
    if not employee.active:
        problem = EMPLOYEE_INACTIVE
    elif account is None:
        problem = NO_ACCOUNT
    elif account.status == AccountStatus.DISABLED:
        problem = ACCOUNT_DISABLED
    else:
        problem = address_problem
    return Recipient(
        employee_id=employee.id,
        employee_number=employee.employee_number,
        name=employee.full_name,
        username=account.username if account else None,
        address=address,
        problem=problem,
        last_emailed_at=account.credentials_emailed_at if account else None,
        address_warning=_address_warning(employee, address),
    )


def _address_warning(employee: Employee, address: str | None) -> str | None:
    """The bounced/dropped flag on the employee, while it is about the address they would be mailed at."""
    if not address or employee.bad_address != address or employee.bad_address_at is None:
        return None
    reason = employee.bad_address_reason or "no reason given"
    return f"{employee.bad_address_event} on {employee.bad_address_at:%-d %b %Y}: {reason}"


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def preview(session: Session, employee_ids: Sequence[int]) -> list[Recipient]:
    """Who would be mailed, in the given order (unknown ids are left out)."""
    return [recipient for recipient, _ in _recipients(session, employee_ids)]


def _recipients(session: Session, employee_ids: Sequence[int]) -> list[tuple[Recipient, int | None]]:
    """(recipient, account id) per known employee, in the given order, without duplicates."""
    ordered = list(dict.fromkeys(employee_ids))
    found: dict[int, tuple[Recipient, int | None]] = {}
    for chunk in _chunks(ordered):
        query = select(Employee).where(Employee.id.in_(chunk)).options(selectinload(Employee.account))
        found.update(
            (e.id, (_recipient(e), e.account.id if e.account else None)) for e in session.scalars(query)
        )
    return [found[i] for i in ordered if i in found]


def _never_emailed(query: Select[Any]) -> Select[Any]:
    """`query` over employees, narrowed to the active ones whose (not disabled) account was never emailed."""
    return query.join(Account, Account.employee_id == Employee.id).where(
        Employee.active.is_(True),
        Account.credentials_emailed_at.is_(None),
        Account.status != AccountStatus.DISABLED,
    )


def never_emailed_employee_ids(session: Session) -> list[int]:
    """Active employees whose (not disabled) account never had credentials emailed, by name."""
    query = _never_emailed(select(Employee.id)).order_by(
        Employee.last_name, Employee.first_name, Employee.employee_number
    )
    return list(session.scalars(query))


def count_never_emailed(session: Session) -> int:
    """len(never_emailed_employee_ids(session)) as one COUNT, without loading and sorting every id
    (most of a second at 100,000 employees), for the picker that must open within Slack's 3 seconds."""
    return session.scalar(_never_emailed(select(func.count()).select_from(Employee))) or 0


def resolve_employees(session: Session, keys: Sequence[str]) -> tuple[list[int], list[str]]:
    """Employee numbers or email addresses (case-insensitive) -> (employee ids, keys not found)."""
    wanted = [key.strip() for key in keys if key.strip()]
    lowered = list(dict.fromkeys(key.lower() for key in wanted))
    by_key: dict[str, int] = {}
    for chunk in _chunks(lowered):
        query = select(Employee.id, Employee.employee_number, Employee.email).where(
            or_(func.lower(Employee.employee_number).in_(chunk), func.lower(Employee.email).in_(chunk))
        )
        for employee_id, number, address in session.execute(query):
            by_key.setdefault(number.lower(), employee_id)
            if address:
                by_key.setdefault(address.lower(), employee_id)
    ids = [by_key[key.lower()] for key in wanted if key.lower() in by_key]
    missing = [key for key in wanted if key.lower() not in by_key]
    return list(dict.fromkeys(ids)), list(dict.fromkeys(missing))


# --- batches ---------------------------------------------------------------------------------------------


def start_batch(
    ctx: Context,
    employee_ids: Sequence[int],
    actor: str,
    source: str,
    channel_id: str | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Commit a batch and one delivery per employee (unmailable ones SKIPPED with the reason); its id."""
    try:
        with ctx.sessions.begin() as session:
            if idempotency_key:
                existing = session.scalar(
                    select(CredentialBatch.id).where(CredentialBatch.idempotency_key == idempotency_key)
                )
                if existing is not None:
                    raise DuplicateBatchError(existing)
            batch = CredentialBatch(
                requested_by=actor,
                source=source,
                channel_id=channel_id,
                idempotency_key=idempotency_key,
                mode=ctx.settings.credential_mode,
                status=BatchStatus.RUNNING,
            )
            session.add(batch)
            session.flush()
            batch_id, mode = batch.id, batch.mode
            employees = skipped = 0
            # In chunks, letting go of each chunk's objects: memory stays flat however many employees.
            for chunk in _chunks(list(dict.fromkeys(employee_ids))):
                for recipient, account_id in _recipients(session, chunk):
                    employees += 1
                    skipped += recipient.problem is not None
                    session.add(
                        Delivery(
                            batch_id=batch_id,
                            employee_id=recipient.employee_id,
                            account_id=account_id,
                            email_address=recipient.address,
                            status=DeliveryStatus.SKIPPED if recipient.problem else DeliveryStatus.PENDING,
                            error=recipient.problem,
                        )
                    )
                    if recipient.problem:
                        record(
                            session,
                            actor,
                            AuditAction.CREDENTIALS_SKIPPED,
                            f"employee:{recipient.employee_number}",
                            batch_id=batch_id,
                            reason=recipient.problem,
                        )
                session.flush()
                session.expunge_all()
            record(
                session,
                actor,
                AuditAction.BATCH_STARTED,
                f"batch:{batch_id}",
                source=source,
                channel_id=channel_id,
                mode=mode,
                employees=employees,
                to_send=employees - skipped,
                skipped=skipped,
            )
            return batch_id
    except IntegrityError:
        if not idempotency_key:
            raise
        with ctx.sessions() as session:  # a concurrent call with the same key won the race
            existing = session.scalar(
                select(CredentialBatch.id).where(CredentialBatch.idempotency_key == idempotency_key)
            )
        if existing is None:
            raise
        raise DuplicateBatchError(existing) from None


def run_batch(
    ctx: Context,
    batch_id: int,
    transport: MailTransport | None = None,
    on_progress: Callable[[DeliveryOutcome], None] | None = None,
) -> BatchSummary:
    """Send the batch's pending deliveries concurrently (MAIL_CONCURRENCY workers) and finish it.

    `on_progress` is called from the worker threads, once per delivery that was pending.
    A batch that is no longer running is only summarised. Ctrl-C (KeyboardInterrupt) stops the batch
    like an auth error does: what is in flight finishes, the rest is skipped, the batch ends ABORTED.
    """
    with ctx.sessions() as session:
        batch = session.get(CredentialBatch, batch_id)
        if batch is None:
            raise LookupError(f"no credential batch {batch_id}")
        running = batch.status == BatchStatus.RUNNING
        pending = list(
            session.scalars(
                select(Delivery.id)
                .where(Delivery.batch_id == batch_id, Delivery.status == DeliveryStatus.PENDING)
                .order_by(Delivery.id)
            )
        )
    if not running:
        with ctx.sessions() as session:
            return _summary(session, batch_id)
    sender = _Sender(ctx, batch, transport or make_transport(ctx.settings), on_progress, pending)
    workers = max(1, min(ctx.settings.mail_concurrency, len(pending)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="credbot-mail")
    futures = [pool.submit(sender.work) for _ in range(workers)]
    try:
        wait(futures)
    except KeyboardInterrupt:  # Ctrl-C in the CLI: finish what is in flight, send nothing more
        sender.stop(INTERRUPTED)
    finally:
        pool.shutdown(wait=True)
    crashed = [error for future in futures if (error := future.exception()) is not None]
    if crashed:
        sender.stop(f"internal error: {type(crashed[0]).__name__}")
    sender.skip_the_rest()
    with ctx.sessions.begin() as session:
        batch = session.get_one(CredentialBatch, batch_id)
        batch.status = BatchStatus.ABORTED if sender.stopped_because else BatchStatus.FINISHED
        batch.error = sender.stopped_because
        batch.finished_at = utcnow()
        counts = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.batch_id == batch_id)
                .group_by(Delivery.status)
            ).all()
        )
        action = AuditAction.BATCH_ABORTED if sender.stopped_because else AuditAction.BATCH_FINISHED
        details = {str(status): counts.get(status, 0) for status in DeliveryStatus if status != "pending"}
        record(session, batch.requested_by, action, f"batch:{batch_id}", error=batch.error, **details)
    if crashed:
        raise crashed[0]
    with ctx.sessions() as session:
        return _summary(session, batch_id)


def send_credentials(
    ctx: Context, employee_ids: Sequence[int], actor: str, source: str, **kw: Any
) -> BatchSummary:
    """Start a batch for `employee_ids` and send it: start_batch + run_batch.

    Keywords: channel_id, idempotency_key (start_batch); transport, on_progress (run_batch).
    """
    transport = kw.pop("transport", None)
    on_progress = kw.pop("on_progress", None)
    batch_id = start_batch(ctx, employee_ids, actor, source, **kw)
    return run_batch(ctx, batch_id, transport=transport, on_progress=on_progress)


def _summary(session: Session, batch_id: int) -> BatchSummary:
    batch = session.get_one(CredentialBatch, batch_id)
    rows = session.execute(  # plain columns, not ORM objects: this is the one per-employee cost
        select(
            Delivery.id,
            Employee.employee_number,
            Employee.first_name,
            Employee.last_name,
            Account.username,
            Delivery.email_address,
            Delivery.status,
            Delivery.error,
        )
        .join(Employee, Employee.id == Delivery.employee_id)
        .outerjoin(Account, Account.id == Delivery.account_id)
        .where(Delivery.batch_id == batch_id)
        .order_by(Delivery.id)
    )
    outcomes: dict[str, list[DeliveryOutcome]] = {status: [] for status in DeliveryStatus}
    for delivery_id, number, first, last, username, address, status, error in rows:
        name = f"{first} {last}".strip()
        outcomes[status].append(
            DeliveryOutcome(delivery_id, number, name, username, address, DeliveryStatus(status), error)
        )
    return BatchSummary(
        batch_id=batch_id,
        status=BatchStatus(batch.status),
        sent=outcomes[DeliveryStatus.SENT],
        failed=outcomes[DeliveryStatus.FAILED],
        skipped=outcomes[DeliveryStatus.SKIPPED],
        error=batch.error,
    )


def _outcome(delivery: Delivery, employee: Employee, username: str | None) -> DeliveryOutcome:
    return DeliveryOutcome(
        delivery_id=delivery.id,
        employee_number=employee.employee_number,
        name=employee.full_name,
        username=username,
        address=delivery.email_address,
        status=DeliveryStatus(delivery.status),
        error=delivery.error,
    )


# --- sending ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What a worker knows about one employee; no ORM objects cross transactions."""

    delivery_id: int
    employee_number: str
    first_name: str
    name: str
    address: str | None
    account_id: int | None
    username: str | None

    def outcome(self, status: DeliveryStatus, error: str | None) -> DeliveryOutcome:
        return DeliveryOutcome(
            self.delivery_id, self.employee_number, self.name, self.username, self.address, status, error
        )


class _Sender:
    """The shared state of one batch run: the queue of deliveries and the stop signal."""

    def __init__(
        self,
        ctx: Context,
        batch: CredentialBatch,
        transport: MailTransport,
        on_progress: Callable[[DeliveryOutcome], None] | None,
        pending: list[int],
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.batch_id = batch.id
        self.actor = batch.requested_by
        self.mode = batch.mode
        self.transport = transport
        self.on_progress = on_progress
        self._queue = iter(pending)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stopped_because: str | None = None

    def stop(self, reason: str) -> None:
        """Stop the batch: no more API calls."""
        with self._lock:
            if self.stopped_because is None:
                self.stopped_because = reason
        self._stop.set()

    def _next(self) -> int | None:
        with self._lock:
            return None if self._stop.is_set() else next(self._queue, None)

    def work(self) -> None:
        while (delivery_id := self._next()) is not None:
            try:
                outcome = self.deliver(delivery_id)
            except Exception:
                log.exception("delivery %s failed unexpectedly", delivery_id)
                outcome = self._fail_unexpectedly(delivery_id)
            self._report(outcome)

    def _fail_unexpectedly(self, delivery_id: int) -> DeliveryOutcome:
        error = "internal error (see the logs); send again"
        with self.ctx.sessions.begin() as session:
            delivery = session.get_one(Delivery, delivery_id)
            delivery.status = DeliveryStatus.FAILED
            delivery.error = error
            employee = session.get_one(Employee, delivery.employee_id)
            username = delivery.account.username if delivery.account else None
            return _outcome(delivery, employee, username)

    def _report(self, outcome: DeliveryOutcome) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(outcome)
        except Exception:
            log.exception("progress callback failed for delivery %s", outcome.delivery_id)

    def skip_the_rest(self) -> None:
        """After a stop: mark every delivery still pending SKIPPED with the reason."""
        if self.stopped_because is None:
            return
        reason = f"not sent: {self.stopped_because}"
        with self.ctx.sessions.begin() as session:
            ids = list(
                session.scalars(
                    select(Delivery.id).where(
                        Delivery.batch_id == self.batch_id, Delivery.status == DeliveryStatus.PENDING
                    )
                )
            )
            for chunk in _chunks(ids):
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(chunk))
                    .values(status=DeliveryStatus.SKIPPED, error=reason, updated_at=utcnow())
                )
        if self.on_progress:
            with self.ctx.sessions() as session:
                for chunk in _chunks(ids):
                    for delivery in session.scalars(
                        select(Delivery).where(Delivery.id.in_(chunk)).options(joinedload(Delivery.employee))
                    ):
                        username = delivery.account.username if delivery.account else None
                        self._report(_outcome(delivery, delivery.employee, username))

    # One employee --------------------------------------------------------------------------------------

    def deliver(self, delivery_id: int) -> DeliveryOutcome:
        # The credential first: hashing needs no database, and nearly every delivery goes ahead.
        expires_at = utcnow() + timedelta(hours=self.settings.temp_password_ttl_hours)
        if self.mode == "link":
            token = secrets.token_urlsafe(32)
            secret_hash = hashlib.sha256(token.encode()).hexdigest()
            context = {"mode": "link", "password": None, "setup_url": self.settings.setup_link_url(token)}
            del token
        else:
            password = generate_temporary_password(self.settings.temp_password_length)
            secret_hash = _hash(password)
            context = {"mode": "password", "password": password, "setup_url": None}
            del password
        try:
            target, problem = self._begin(delivery_id, secret_hash, expires_at)
            if problem is not None:
                audited = None if problem.startswith("not sent:") else AuditAction.CREDENTIALS_SKIPPED
                return self._finish(target, DeliveryStatus.SKIPPED, problem, audited)
            if self._stop.is_set():
                error = f"not sent: {self.stopped_because}"
                return self._finish(target, DeliveryStatus.SKIPPED, error, discard=secret_hash)
            try:
                message_id = self._send(target, "welcome", WELCOME_CATEGORY, expires_at=expires_at, **context)
            except MailError as error:
                if isinstance(error, MailAuthError):
                    self.stop(error.reason)
                reason = f"welcome email not sent: {error.reason}"
                return self._finish(
                    target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, discard=secret_hash
                )
        finally:
            context.clear()  # drop the plaintext password or link as soon as it is handed off
        self._promote(target, secret_hash, expires_at, message_id)

        # The employee has a working credential now, so it stays; a resend mails both again.
        what = "set-password link" if self.mode == "link" else "temporary password"
        partial = f"the welcome email was sent and its {what} works, but the username email was not: {{}}"
        again = "; send again to email both"
        if self._stop.is_set():
            error = partial.format(self.stopped_because) + again
            return self._finish(target, DeliveryStatus.FAILED, error, AuditAction.CREDENTIALS_FAILED)
        try:
            message_id = self._send(target, "username", USERNAME_CATEGORY, mode=self.mode)
        except MailError as error:
            if isinstance(error, MailAuthError):
                self.stop(error.reason)
            reason = partial.format(error.reason) + again
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, username_sent=True
            )
        return self._finish(
            target,
            DeliveryStatus.SENT,
            None,
            AuditAction.CREDENTIALS_SENT,
            username_sent=True,
            username_message_id=message_id,
        )

    def _begin(self, delivery_id: int, secret_hash: str, expires_at: datetime) -> tuple[_Target, str | None]:
        """Re-check the employee; if they can be mailed, commit the credential's hash as pending.

        Returns the target and None, or the target and why it is not sent.
        """
        with self.ctx.sessions.begin() as session:
            delivery, employee = session.execute(
                select(Delivery, Employee)
                .join(Employee, Employee.id == Delivery.employee_id)
                .where(Delivery.id == delivery_id)
                .options(joinedload(Employee.account))
            ).one()
            recipient = _recipient(employee)
            account = employee.account
            target = _Target(
                delivery_id=delivery_id,
                employee_number=employee.employee_number,
                first_name=employee.first_name,
                name=employee.full_name,
                address=delivery.email_address,
                account_id=account.id if account else None,
                username=account.username if account else None,
            )
            if recipient.problem:
                return target, recipient.problem
            if recipient.address != delivery.email_address:
                return target, ADDRESS_CHANGED
            if self._stop.is_set():
                return target, f"not sent: {self.stopped_because}"
            assert account is not None
            if self.mode == "link":
                session.add(SetupLink(account_id=account.id, token_hash=secret_hash, expires_at=expires_at))
            else:
                account.pending_password_hash = secret_hash
                account.pending_password_expires_at = expires_at
            delivery.account_id = account.id
            delivery.attempts += 1  # the welcome email is handed over next
            return target, None

    def _promote(self, target: _Target, secret_hash: str, expires_at: datetime, message_id: str) -> None:
        """The welcome email was accepted: its credential becomes the account's."""
        now = utcnow()
        values: dict[Any, Any] = {
            _ACCOUNTS.c.status: case(
                (_ACCOUNTS.c.status == AccountStatus.DISABLED, _ACCOUNTS.c.status),
                else_=AccountStatus.INVITED,
            ),
            _ACCOUNTS.c.failed_login_count: 0,
            _ACCOUNTS.c.locked_until: None,
            _ACCOUNTS.c.credentials_emailed_at: now,
            _ACCOUNTS.c.credentials_emailed_by: self.actor,
        }
        if self.mode != "link":
            ours = _ACCOUNTS.c.pending_password_hash == secret_hash
            values |= {
                _ACCOUNTS.c.password_hash: secret_hash,
                _ACCOUNTS.c.temp_password_expires_at: expires_at,
                _ACCOUNTS.c.must_change_password: True,
                _ACCOUNTS.c.pending_password_hash: case(
                    (ours, null()), else_=_ACCOUNTS.c.pending_password_hash
                ),
                _ACCOUNTS.c.pending_password_expires_at: case(
                    (ours, null()), else_=_ACCOUNTS.c.pending_password_expires_at
                ),
            }
        with self.ctx.sessions.begin() as session:
            session.execute(update(_ACCOUNTS).where(_ACCOUNTS.c.id == target.account_id).values(values))
            if self.mode == "link":
                session.execute(update(_LINKS).where(_LINKS.c.token_hash == secret_hash).values(sent_at=now))
            # Older unused links would still work otherwise: the newest credential replaces them.
            session.execute(
                update(_LINKS)
                .where(
                    _LINKS.c.account_id == target.account_id,
                    _LINKS.c.token_hash != secret_hash,
                    _LINKS.c.used_at.is_(None),
                    _LINKS.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            session.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id == target.delivery_id)
                .values(welcome_message_id=message_id or None)
            )

    def _send(self, target: _Target, template: str, category: str, **context: Any) -> str:
        """Render `template` for `target` and hand it to the transport; the accepted message id."""
        assert target.address is not None
        subject = (
            self.settings.welcome_link_subject
            if template == "welcome" and self.mode == "link"
            else getattr(self.settings, f"{template}_subject")
        )
        company = self.settings.company_name
        text, html = render_email(
            template,
            company=company,
            first_name=target.first_name,
            username=target.username,
            sign_in_url=self.settings.sign_in_url,
            **context,
        )
        email = OutgoingEmail(
            to_address=target.address,
            to_name=target.name,
            subject=subject.format(company=company),
            text=text,
            html=html,
            category=category,
            custom_args={"batch_id": str(self.batch_id), "delivery_id": str(target.delivery_id)},
            employee_number=target.employee_number,
        )
        del text, html
        return self.transport.send(email)

    def _finish(
        self,
        target: _Target,
        status: DeliveryStatus,
        error: str | None,
        action: AuditAction | None = None,
        *,
        discard: str | None = None,
        username_sent: bool = False,
        username_message_id: str | None = None,
    ) -> DeliveryOutcome:
        """Record the delivery's final status (and an audit event); its outcome.

        `discard`: the hash of a credential whose email did not go out: it must not work. The account's
        current password is left alone, so an earlier emailed one keeps working.
        """
        values: dict[Any, Any] = {_DELIVERIES.c.status: status, _DELIVERIES.c.error: error}
        if username_sent:
            values[_DELIVERIES.c.attempts] = _DELIVERIES.c.attempts + 1
            values[_DELIVERIES.c.username_message_id] = username_message_id or None
        with self.ctx.sessions.begin() as session:
            if discard and self.mode == "link":
                session.execute(
                    update(_LINKS)
                    .where(_LINKS.c.token_hash == discard, _LINKS.c.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
            elif discard:
                session.execute(
                    update(_ACCOUNTS)
                    .where(_ACCOUNTS.c.id == target.account_id, _ACCOUNTS.c.pending_password_hash == discard)
                    .values(pending_password_hash=None, pending_password_expires_at=None)
                )
            session.execute(update(_DELIVERIES).where(_DELIVERIES.c.id == target.delivery_id).values(values))
            if action is not None:
                record(
                    session,
                    self.actor,
                    action,
                    f"employee:{target.employee_number}",
                    batch_id=self.batch_id,
                    delivery_id=target.delivery_id,
                    username=target.username,
                    address=target.address,
                    mode=self.mode,
                    reason=error,
                )
        log.info("delivery %s: %s%s", target.delivery_id, status, f" ({error})" if error else "")
        return target.outcome(status, error)
