"""Sending a batch: every delivery claimed under a lease, then the welcome and username emails.

The invariant this module keeps (see `bot.sending`): at most one delivery in flight per account across
all processes; a credential becomes the account's password only once the mail API accepted the email
carrying it; a pending credential that may have reached the employee stays valid until it expires;
every delivery ends as sent, failed, skipped or in doubt, each with its reason.

Per delivery (a worker thread; three short transactions, each retried on transient database errors):

1. Claim, check and store, in one transaction: a conditional UPDATE moves the delivery from pending (or
   from sending under an expired lease) to sending under this runner's lease (`FOR UPDATE SKIP LOCKED`
   picks it on PostgreSQL), and a second one claims the account (`sending_delivery_id`,
   `sending_until`). If another delivery holds the account, this one is SKIPPED with "a send for this
   employee is in progress": never both send.
2. Re-check the employee: unmailable now, or an address different from the one confirmed: SKIPPED.
3. A new credential, hashed ahead of need (`bot.credentials.PasswordSupply`, so the hash pool never
   waits on the mail API); its hash is stored as pending (`bot.credentials.store_pending`). A retried
   claim takes a fresh credential: the lost commit may have stored the last one.
4. The welcome email. Accepted: the credential is promoted. Refused (4xx) or not sent at all: the
   credential is discarded and the delivery FAILS with the reason. In doubt (timeout, connection lost
   after the request was written, 5xx after the retries, which resend the same message): the delivery
   is IN_DOUBT and the pending credential stays valid until it expires (signing in with it promotes it).
   Any other error: FAILED with its type, the credential discarded.
5. The username email; if it fails, the welcome email's credential still works and the reason says so.

A runner renews its leases and the batch's heartbeat every second; a killed worker's deliveries are
claimed again once their lease runs out (a delivery whose welcome email was accepted only gets its
username email again), and `resume_stalled` finds batches whose heartbeat stopped. The batch ends once
nothing is pending or in flight: FINISHED, or ABORTED with the reason it was stopped (401/403 from the
mail API, or a stop asked for, e.g. Ctrl-C in the CLI).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import joinedload
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from bot import credentials
from bot.audit import AuditAction, record, seal_later, seal_now
from bot.context import Context
from bot.credentials import Credential, Pending
from bot.mail import MailAuthError, MailError, MailTransport, OutgoingEmail, make_transport, render_email
from bot.sending.batches import (
    ADDRESS_CHANGED,
    IN_PROGRESS,
    MAY_HAVE_ARRIVED,
    MAY_HAVE_ARRIVED_LINK,
    BatchSummary,
    DeliveryOutcome,
    summarise,
)
from bot.sending.recipients import Recipient, chunks, recipient_of
from models import (
    Account,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    utcnow,
)

log = logging.getLogger(__name__)

_ACCOUNTS = Account.__table__
_DELIVERIES = Delivery.__table__
_BATCHES = CredentialBatch.__table__

INTERRUPTED = "interrupted (Ctrl-C)"
WELCOME_CATEGORY = "credbot-welcome"
USERNAME_CATEGORY = "credbot-username"
DB_RETRY_SECONDS = 60.0
"""How long a transaction is retried while the database is unreachable."""
_SERIALIZATION_FAILURES = {"40001", "40P01"}  # serialization failure, deadlock detected


def transient(error: BaseException) -> bool:
    """True for database errors worth retrying: connection refused or reset, locked, serialization."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError)):
        return True
    return getattr(error.orig, "sqlstate", None) in _SERIALIZATION_FAILURES


def _log_db_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "database unavailable (%s); retrying (attempt %d)", type(error).__name__, state.attempt_number
    )


db_retry = retry(
    retry=retry_if_exception(transient),
    wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.1),
    stop=stop_after_delay(DB_RETRY_SECONDS),
    before_sleep=_log_db_retry,
    reraise=True,
)
"""Retry a whole transaction (a function opening its own session) on transient database errors."""


@dataclass(frozen=True)
class _Target:
    """What a worker knows about one employee; no ORM objects cross transactions."""

    delivery_id: int
    account_id: int | None
    employee_number: str
    first_name: str
    name: str
    address: str | None
    username: str | None
    welcome_sent: bool

    def outcome(self, status: DeliveryStatus, error: str | None) -> DeliveryOutcome:
        return DeliveryOutcome(
            self.delivery_id, self.employee_number, self.name, self.username, self.address, status, error
        )


@dataclass(frozen=True)
class _Claim:
    """A delivery claimed by this runner: why it is skipped (None: send), and, when its welcome email
    is to be sent, the new credential stored as pending with what was pending before it."""

    target: _Target
    problem: str | None
    stored: tuple[Credential, Pending] | None


class BatchRunner:
    """One worker's run of a batch: a pool of mail threads claiming deliveries until none is left."""

    def __init__(
        self,
        ctx: Context,
        batch_id: int,
        transport: MailTransport | None = None,
        on_progress: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.batch_id = batch_id
        self.transport = transport or make_transport(ctx.settings)
        self.on_progress = on_progress
        self.runner_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=self.settings.send_lease_seconds)
        self.actor = ""
        self.mode = "password"
        self.stopped_because: str | None = None
        self._stop = threading.Event()
        self._supply: credentials.PasswordSupply | None = None
        self._done = threading.Event()
        self._held: set[int] = set()
        self._lock = threading.Lock()

    # The run ---------------------------------------------------------------------------------------

    def run(self) -> tuple[BatchSummary, bool]:
        """Send what is left of the batch; (its summary, whether this run ended the batch)."""
        with self.ctx.sessions() as session:
            batch = session.get(CredentialBatch, self.batch_id)
            if batch is None:
                raise LookupError(f"no credential batch {self.batch_id}")
            self.actor, self.mode = batch.requested_by, batch.mode
            running, stop_reason = batch.status == BatchStatus.RUNNING, batch.stop_reason
            left = session.scalar(
                select(func.count()).where(
                    Delivery.batch_id == self.batch_id,
                    Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                )
            )
        if not running:
            with self.ctx.sessions() as session:
                return summarise(session, self.batch_id), False
        if stop_reason:
            self._stopped(stop_reason)
        heartbeat = threading.Thread(target=self._heartbeat, name="credbot-lease", daemon=True)
        heartbeat.start()
        workers = max(1, min(self.settings.mail_concurrency, left or 1))
        if self.mode == "password":
            self._supply = credentials.PasswordSupply(self.settings)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="credbot-mail") as pool:
                futures = [pool.submit(self._work) for _ in range(workers)]
                crashed = [error for future in futures if (error := future.exception()) is not None]
                if not crashed and self._release_orphans():  # claims whose commit answer was lost
                    futures = [pool.submit(self._work) for _ in range(workers)]
        finally:
            if self._supply is not None:
                self._supply.close()
        self._done.set()
        heartbeat.join()
        seal_now(self.ctx.sessions)
        crashed = [error for future in futures if (error := future.exception()) is not None]
        if crashed:
            self._let_go()
            raise crashed[0]
        if self.stopped_because:
            self._skip_the_rest()
        finished = self._try_finish()
        with self.ctx.sessions() as session:
            return summarise(session, self.batch_id), finished

    def stop(self, reason: str) -> None:
        """Stop the batch, in every process running it: no more API calls."""
        self._stopped(reason)
        try:
            with self.ctx.sessions.begin() as session:
                session.execute(
                    update(_BATCHES)
                    .where(_BATCHES.c.id == self.batch_id, _BATCHES.c.stop_reason.is_(None))
                    .values(stop_reason=reason)
                )
        except DBAPIError:
            log.warning("could not record the stop of batch %s; the heartbeat will try again", self.batch_id)

    def _stopped(self, reason: str) -> None:
        with self._lock:
            if self.stopped_because is None:
                self.stopped_because = reason
        self._stop.set()

    def _work(self) -> None:
        while not self._stop.is_set():
            claimed = self._claim_next()
            if claimed is None:
                return
            if isinstance(claimed, DeliveryOutcome):  # the employee is being sent to by another batch
                self._report(claimed)
                continue
            self._report(self._deliver(claimed))

    def _report(self, outcome: DeliveryOutcome) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(outcome)
        except Exception:
            log.exception("progress callback failed for delivery %s", outcome.delivery_id)

    def _heartbeat(self) -> None:
        """Renew this runner's leases and the batch's heartbeat; notice a stop asked for elsewhere."""
        interval = min(1.0, self.lease.total_seconds() / 3)
        while not self._done.wait(interval):
            try:
                self._renew()
            except Exception:  # the database away for a moment: the next beat tries again
                log.warning("could not renew the leases of batch %s", self.batch_id, exc_info=True)
            seal_now(self.ctx.sessions)

    def _renew(self) -> None:
        now = utcnow()
        with self._lock:
            held = list(self._held)
        with self.ctx.sessions.begin() as session:
            session.execute(
                update(_DELIVERIES)
                .where(
                    _DELIVERIES.c.claimed_by == self.runner_id, _DELIVERIES.c.status == DeliveryStatus.SENDING
                )
                .values(lease_until=now + self.lease)
            )
            for chunk in chunks(held):
                session.execute(
                    update(_ACCOUNTS)
                    .where(_ACCOUNTS.c.sending_delivery_id.in_(chunk))
                    .values(sending_until=now + self.lease)
                )
            session.execute(update(_BATCHES).where(_BATCHES.c.id == self.batch_id).values(heartbeat_at=now))
            reason = session.scalar(select(_BATCHES.c.stop_reason).where(_BATCHES.c.id == self.batch_id))
        if reason:
            self._stopped(reason)

    def _let_go(self) -> None:
        """After a crash: make this runner's claims free to take at once (best effort)."""
        try:
            with self.ctx.sessions.begin() as session:
                session.execute(
                    update(_DELIVERIES)
                    .where(
                        _DELIVERIES.c.claimed_by == self.runner_id,
                        _DELIVERIES.c.status == DeliveryStatus.SENDING,
                    )
                    .values(lease_until=utcnow())
                )
        except DBAPIError:
            log.warning(
                "could not let go of the claims of batch %s; their leases will run out", self.batch_id
            )

    # Claims ----------------------------------------------------------------------------------------

    @db_retry
    def _release_orphans(self) -> int:
        """Deliveries this run claimed without knowing it (the connection dropped as the claim committed,
        and the retry claimed another): nothing was sent for them, so they go back to pending."""
        with self.ctx.sessions.begin() as session:
            released = session.execute(
                update(_DELIVERIES)
                .where(
                    _DELIVERIES.c.batch_id == self.batch_id,
                    _DELIVERIES.c.claimed_by == self.runner_id,
                    _DELIVERIES.c.status == DeliveryStatus.SENDING,
                    _DELIVERIES.c.welcome_sent_at.is_(None),
                )
                .values(status=DeliveryStatus.PENDING, lease_until=None)
            )
            return released.rowcount

    @db_retry
    def _claim_next(self) -> _Claim | DeliveryOutcome | None:
        """Claim the next delivery, check its employee and store its new credential as pending, in one
        transaction: the claim, None when nothing is left to claim, or the SKIPPED outcome of one whose
        employee another batch holds."""
        credential = self._new_credential()  # a fresh one per attempt: a lost commit may have stored one
        stored = False
        try:
            while True:
                now = utcnow()
                until = now + self.lease
                with self.ctx.sessions.begin() as session:
                    claimable = or_(
                        _DELIVERIES.c.status == DeliveryStatus.PENDING,
                        and_(_DELIVERIES.c.status == DeliveryStatus.SENDING, _DELIVERIES.c.lease_until < now),
                    )
                    row = session.execute(
                        select(_DELIVERIES.c.id, _DELIVERIES.c.account_id)
                        .where(_DELIVERIES.c.batch_id == self.batch_id, claimable)
                        .order_by(_DELIVERIES.c.id)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    ).first()
                    if row is None:
                        return None
                    delivery_id, account_id = row
                    claimed = session.execute(
                        update(_DELIVERIES)
                        .where(_DELIVERIES.c.id == delivery_id, claimable)
                        .values(status=DeliveryStatus.SENDING, lease_until=until, claimed_by=self.runner_id)
                    )
                    if claimed.rowcount != 1:
                        continue  # another runner was quicker
                    if account_id is not None:
                        ours = session.execute(
                            update(_ACCOUNTS)
                            .where(
                                _ACCOUNTS.c.id == account_id,
                                or_(
                                    _ACCOUNTS.c.sending_until.is_(None),
                                    _ACCOUNTS.c.sending_until < now,
                                    _ACCOUNTS.c.sending_delivery_id == delivery_id,
                                ),
                            )
                            .values(sending_delivery_id=delivery_id, sending_until=until)
                        )
                        if ours.rowcount != 1:
                            return self._skip_busy(session, delivery_id)
                    with self._lock:
                        self._held.add(delivery_id)
                    target, problem = self._check(session, delivery_id)
                    if problem is not None or target.welcome_sent:
                        return _Claim(target, problem, None)
                    assert target.account_id is not None
                    before = credentials.store_pending(session, target.account_id, credential)
                    session.execute(
                        update(_DELIVERIES)
                        .where(_DELIVERIES.c.id == delivery_id)
                        .values(account_id=target.account_id, attempts=_DELIVERIES.c.attempts + 1)
                    )
                    stored = True
                return _Claim(target, None, (credential, before))
        finally:
            if not stored and self._supply is not None:
                self._supply.give_back(credential)

    def _new_credential(self) -> Credential:
        if self._supply is not None:
            return self._supply.take()
        return credentials.make_credential(self.settings, self.mode)

    def _skip_busy(self, session: Any, delivery_id: int) -> DeliveryOutcome:
        session.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id == delivery_id)
            .values(status=DeliveryStatus.SKIPPED, error=IN_PROGRESS, lease_until=None)
        )
        target = self._target(session, delivery_id)
        self._audit(session, target, AuditAction.CREDENTIALS_SKIPPED, IN_PROGRESS)
        return target.outcome(DeliveryStatus.SKIPPED, IN_PROGRESS)

    # One employee ----------------------------------------------------------------------------------

    def _deliver(self, claim: _Claim) -> DeliveryOutcome:
        target, problem = claim.target, claim.problem
        if problem is not None:
            action = None if problem.startswith("not sent:") else AuditAction.CREDENTIALS_SKIPPED
            return self._finish(target, DeliveryStatus.SKIPPED, problem, action)
        if claim.stored is not None:
            failed = self._welcome(target, claim.stored)
            if failed is not None:
                return failed
        return self._username(target)

    def _welcome(self, target: _Target, stored: tuple[Credential, Pending]) -> DeliveryOutcome | None:
        """Send the welcome email with the new credential stored as pending; None once it was accepted
        and promoted."""
        what = "link" if self.mode == "link" else "password"
        credential = stored[0]
        try:
            try:
                message_id = self._send(target, "welcome", WELCOME_CATEGORY, **credential.email)
            finally:
                credential.email.clear()  # the plaintext exists only until it is handed to the mail API
        except MailError as error:
            if isinstance(error, MailAuthError):
                self.stop(error.reason)
            if error.in_doubt:
                may = MAY_HAVE_ARRIVED_LINK if what == "link" else MAY_HAVE_ARRIVED
                reason = f"welcome email {may} ({error.reason})"
                return self._finish(target, DeliveryStatus.IN_DOUBT, reason, AuditAction.CREDENTIALS_IN_DOUBT)
            reason = f"welcome email not sent: {error.reason}"
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, discard=stored
            )
        except Exception as error:
            log.exception("delivery %s failed unexpectedly", target.delivery_id)
            reason = f"welcome email not sent: internal error ({type(error).__name__}; see the logs)"
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, discard=stored
            )
        self._promote(target, credential, message_id)
        return None

    def _username(self, target: _Target) -> DeliveryOutcome:
        what = "set-password link" if self.mode == "link" else "temporary password"
        partial = f"the welcome email was sent and its {what} works, but the username email {{}}"
        if self._stop.is_set():
            error = partial.format(f"was not: {self.stopped_because}") + "; send again to email both"
            return self._finish(target, DeliveryStatus.FAILED, error, AuditAction.CREDENTIALS_FAILED)
        try:
            message_id = self._send(target, "username", USERNAME_CATEGORY, mode=self.mode)
        except MailError as error:
            if isinstance(error, MailAuthError):
                self.stop(error.reason)
            if error.in_doubt:
                reason = partial.format(f"may have been delivered ({error.reason})")
                return self._finish(
                    target,
                    DeliveryStatus.IN_DOUBT,
                    reason,
                    AuditAction.CREDENTIALS_IN_DOUBT,
                    username_tried=True,
                )
            reason = partial.format(f"was not: {error.reason}") + "; send again to email both"
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, username_tried=True
            )
        except Exception as error:
            log.exception("delivery %s failed unexpectedly", target.delivery_id)
            reason = partial.format(f"was not: internal error ({type(error).__name__}; see the logs)")
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, username_tried=True
            )
        return self._finish(
            target,
            DeliveryStatus.SENT,
            None,
            AuditAction.CREDENTIALS_SENT,
            username_tried=True,
            username_message_id=message_id,
        )

    def _check(self, session: Any, delivery_id: int) -> tuple[_Target, str | None]:
        """The target, and why it is not to be sent now (None: go ahead)."""
        target, recipient = self._load(session, delivery_id)
        if target.welcome_sent:
            return target, None  # its credential works already; only the username email is left
        if recipient.problem:
            return target, recipient.problem
        if recipient.address != target.address:
            return target, ADDRESS_CHANGED
        if self._stop.is_set():
            return target, f"not sent: {self.stopped_because}"
        return target, None

    def _target(self, session: Any, delivery_id: int) -> _Target:
        return self._load(session, delivery_id)[0]

    def _load(self, session: Any, delivery_id: int) -> tuple[_Target, Recipient]:
        delivery, employee = session.execute(
            select(Delivery, Employee)
            .join(Employee, Employee.id == Delivery.employee_id)
            .where(Delivery.id == delivery_id)
            .options(joinedload(Employee.account))
        ).one()
        account = employee.account
        target = _Target(
            delivery_id=delivery_id,
            account_id=account.id if account else None,
            employee_number=employee.employee_number,
            first_name=employee.first_name,
            name=employee.full_name,
            address=delivery.email_address,
            username=account.username if account else None,
            welcome_sent=delivery.welcome_sent_at is not None,
        )
        return target, recipient_of(employee)

    @db_retry
    def _promote(self, target: _Target, credential: Credential, message_id: str) -> None:
        """The welcome email was accepted: its credential becomes the account's."""
        assert target.account_id is not None
        now = utcnow()
        with self.ctx.sessions.begin() as session:
            credentials.promote(
                session,
                target.account_id,
                self.mode,
                credential.secret_hash,
                credential.expires_at,
                emailed_by=self.actor,
                now=now,
            )
            session.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id == target.delivery_id)
                .values(welcome_sent_at=now, welcome_message_id=message_id or None)
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

    @db_retry
    def _finish(
        self,
        target: _Target,
        status: DeliveryStatus,
        error: str | None,
        action: AuditAction | None = None,
        *,
        discard: tuple[Credential, Pending] | None = None,
        username_tried: bool = False,
        username_message_id: str | None = None,
    ) -> DeliveryOutcome:
        """Record the delivery's final status (and an audit event), let go of the account; its outcome.

        `discard`: a credential whose email did not go out, and what was pending before it: it must not
        work, and the earlier one comes back. The account's current password is left alone.
        """
        values: dict[Any, Any] = {
            _DELIVERIES.c.status: status,
            _DELIVERIES.c.error: error,
            _DELIVERIES.c.lease_until: None,
        }
        if username_tried:  # `attempts` counts the emails handed to the mail API
            values[_DELIVERIES.c.attempts] = _DELIVERIES.c.attempts + 1
            values[_DELIVERIES.c.username_message_id] = username_message_id or None
        with self.ctx.sessions.begin() as session:
            if discard is not None and target.account_id is not None:
                credential, before = discard
                credentials.discard(session, target.account_id, self.mode, credential.secret_hash, before)
            session.execute(update(_DELIVERIES).where(_DELIVERIES.c.id == target.delivery_id).values(values))
            if target.account_id is not None:
                session.execute(
                    update(_ACCOUNTS)
                    .where(
                        _ACCOUNTS.c.id == target.account_id,
                        _ACCOUNTS.c.sending_delivery_id == target.delivery_id,
                    )
                    .values(sending_delivery_id=None, sending_until=None)
                )
            if action is not None:
                self._audit(session, target, action, error)
                seal_later(session)  # the heartbeat seals once a second, not every delivery
        with self._lock:
            self._held.discard(target.delivery_id)
        log.info("delivery %s: %s%s", target.delivery_id, status, f" ({error})" if error else "")
        return target.outcome(status, error)

    def _audit(self, session: Any, target: _Target, action: AuditAction, reason: str | None) -> None:
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
            reason=reason,
        )

    # The end of the batch --------------------------------------------------------------------------

    @db_retry
    def _skip_the_rest(self) -> None:
        """After a stop: every delivery still pending is SKIPPED with the reason (and reported)."""
        reason = f"not sent: {self.stopped_because}"
        with self.ctx.sessions.begin() as session:
            ids = list(
                session.scalars(
                    select(_DELIVERIES.c.id).where(
                        _DELIVERIES.c.batch_id == self.batch_id,
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
        if self.on_progress:
            with self.ctx.sessions() as session:
                for chunk in chunks(ids):
                    for delivery_id in chunk:
                        self._report(
                            self._target(session, delivery_id).outcome(DeliveryStatus.SKIPPED, reason)
                        )

    @db_retry
    def _try_finish(self) -> bool:
        """End the batch if nothing is pending or in flight any more; True if this call ended it."""
        with self.ctx.sessions.begin() as session:
            left = session.scalar(
                select(func.count()).where(
                    _DELIVERIES.c.batch_id == self.batch_id,
                    _DELIVERIES.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                )
            )
            if left:
                return False
            reason = session.scalar(select(_BATCHES.c.stop_reason).where(_BATCHES.c.id == self.batch_id))
            status = BatchStatus.ABORTED if reason else BatchStatus.FINISHED
            ended = session.execute(
                update(_BATCHES)
                .where(_BATCHES.c.id == self.batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
                .values(status=status, error=reason, finished_at=utcnow())
            )
            if ended.rowcount != 1:
                return False
            counts = dict(
                session.execute(
                    select(_DELIVERIES.c.status, func.count())
                    .where(_DELIVERIES.c.batch_id == self.batch_id)
                    .group_by(_DELIVERIES.c.status)
                ).all()
            )
            action = AuditAction.BATCH_ABORTED if reason else AuditAction.BATCH_FINISHED
            details = {str(s): counts.get(s, 0) for s in DeliveryStatus if s not in ("pending", "sending")}
            record(session, self.actor, action, f"batch:{self.batch_id}", error=reason, **details)
            return True


def run_batch(
    ctx: Context,
    batch_id: int,
    transport: MailTransport | None = None,
    on_progress: Callable[[DeliveryOutcome], None] | None = None,
) -> BatchSummary:
    """Send what is left of a batch in this thread (and its mail threads); its summary.

    `on_progress` is called from the mail threads, once per delivery this run ends.
    """
    summary, _ = BatchRunner(ctx, batch_id, transport, on_progress).run()
    return summary


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


def mark_resumed(session: Any, batch_id: int, actor: str, why: str, stale: Any = None) -> bool:
    """Count a resume of a running batch (only if its heartbeat is older than `stale`, when given)."""
    condition = and_(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
    if stale is not None:
        condition = and_(condition, or_(_BATCHES.c.heartbeat_at.is_(None), _BATCHES.c.heartbeat_at < stale))
    marked = session.execute(
        update(_BATCHES).where(condition).values(heartbeat_at=utcnow(), resumed=_BATCHES.c.resumed + 1)
    )
    if marked.rowcount != 1:
        return False
    record(session, actor, AuditAction.BATCH_RESUMED, f"batch:{batch_id}", reason=why)
    return True
