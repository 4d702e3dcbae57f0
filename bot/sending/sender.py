"""Sending a batch: every delivery claimed under a lease, then the welcome and username emails.

The invariant this module keeps (see `bot.sending`): at most one delivery in flight per account across
all processes; a credential becomes the account's password only once the mail API accepted the email
carrying it; a pending credential that may have reached the employee stays valid until it expires;
every delivery ends as sent, failed, skipped or in doubt, each with its reason.

The fencing rule that keeps it when a runner stalls (a paused VM, a GC or swap storm, a worker cut off
from the database but still reaching the mail API): every claim raises the delivery's fencing token
(`bot.sending.claims`), and a runner's ending, promotion and lease renewal take effect only while its
token is still current, checked in the database with the delivery locked. A runner that lost its
claim changes no account: its late result is recorded as superseded (audited, `credentials.superseded`)
and, if the mail API accepted its email after all, that credential is left as it is, never promoted:
pending until it expires if no newer claim replaced it, like one in doubt. Which accepted email is the
newest is therefore decided in the database, by the claim that is current when it ends. A runner also
fences itself: before each email it checks that its leases were renewed within two thirds of a lease
(by the monotonic clock, which runs on while a process is stopped), and renews them first if not; a
delivery it no longer holds is not sent.

Per delivery (a mail thread; every transaction retried on transient database errors):

1. Claim, check and store, in one transaction for a group of up to CLAIM_GROUP deliveries (one thread
   claims while the others send): a conditional UPDATE moves them from pending (or from sending under
   an expired lease) to sending under this runner's lease (`FOR UPDATE SKIP LOCKED` picks them on
   PostgreSQL), and a second one claims their accounts (`sending_delivery_id`, `sending_until`). A
   delivery whose account another delivery holds is SKIPPED with "a send for this employee is in
   progress": never both send. A claimed delivery waiting for a mail thread is in flight: its lease
   is renewed like the others'.
2. Re-check the employee: unmailable now, or an address different from the one confirmed: SKIPPED.
3. A new credential, hashed ahead of need (`bot.credentials.PasswordSupply`, so the hash pool never
   waits on the mail API); its hash is stored as pending (`bot.credentials.store_pending_many`). A
   retried claim takes fresh credentials: the lost commit may have stored the last ones.
4. The welcome email. Accepted: the credential is promoted with the delivery's ending (6). Refused
   (4xx) or not sent at all: the credential is discarded and the delivery FAILS with the reason. In
   doubt (timeout, connection lost after the request was written, 5xx after the retries, which resend
   the same message): the delivery is IN_DOUBT and the pending credential stays valid until it expires
   (signing in with it promotes it). Any other error: FAILED with its type, the credential discarded.
   Stopped before its welcome email: SKIPPED, the credential discarded.
5. The username email, at once; if it fails, the welcome email's credential still works and the reason
   says so.
6. The ending, in one transaction: the final status, the welcome email's credential promoted, its audit
   event, the account let go. Endings go through a group commit (`bot.sending.group_commit`): a writer
   thread writes what the mail threads ended within WRITE_LINGER_SECONDS in one transaction. A mail
   thread does not wait for it: it goes on to its next delivery (but not to the one after), and reports
   the ended one once its write committed. Per employee that is a fraction of a transaction: the CPU
   saved is the batch's time, as hashing fills every core.

Until its ending committed a delivery is in flight: SENDING under its lease, the account held. A runner
beats every second (the batch's heartbeat; a stop asked for elsewhere) and renews its leases every third
of a lease; a killed worker's deliveries are claimed again once their lease runs out and sent again,
both emails with a new credential (the one in the first welcome email, never promoted, is replaced as
pending), and `resume_stalled` finds batches whose heartbeat stopped. The batch ends once nothing is
pending or in flight: FINISHED, or ABORTED with the reason it was stopped (401/403 from the mail API, or
a stop asked for, e.g. Ctrl-C in the CLI).

A worker stopping (SIGTERM: a deploy) drains its runners (`drain_all`): they claim nobody more, end
the deliveries already handed to the mail API, and release the claimed ones not yet sent (back to
pending, their credential discarded), so another worker takes them at once; the job then queues the
batch again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from bot import credentials
from bot.audit import (
    AuditAction,
    batch_target,
    employee_target,
    record,
    record_many,
    seal_later,
    seal_now,
)
from bot.chunks import chunks
from bot.context import Context
from bot.credentials import Credential, Pending, hash_threads
from bot.installation import custom_args, identity
from bot.mail import MailAuthError, MailError, MailTransport, OutgoingEmail, make_transport, render_email
from bot.sending import claims, schedule
from bot.sending.batches import (
    ADDRESS_CHANGED,
    EMAILED_SINCE,
    IN_PROGRESS,
    MAY_HAVE_ARRIVED,
    MAY_HAVE_ARRIVED_LINK,
    BatchSummary,
    DeliveryOutcome,
    summarise,
)
from bot.sending.claims import Held
from bot.sending.group_commit import GroupCommit
from bot.sending.recipients import mail_check
from models import (
    Account,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    full_name,
    rowcount,
    utcnow,
)

log = logging.getLogger(__name__)

_ACCOUNTS = Account.__table__
_DELIVERIES = Delivery.__table__
_BATCHES = CredentialBatch.__table__
_EMPLOYEES = Employee.__table__

CLAIM_GROUP = 64
"""Deliveries claimed (and credentials stored) per transaction; their leases are renewed until sent."""
WRITE_GROUP = 128
WRITE_LINGER_SECONDS = 0.2
"""How long the writer gathers endings before writing them in one transaction (a mail thread goes on
meanwhile)."""

INTERRUPTED = "interrupted (Ctrl-C)"
SUPERSEDED = "superseded: this runner lost its claim (stalled past its lease) and another runner took it"
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
    fence: int
    """The fencing token of this runner's claim (see `bot.sending.claims`)."""
    account_id: int | None
    employee_number: str
    first_name: str
    name: str
    address: str | None
    username: str | None
    bypass_bounce_list: bool = False
    """The admin confirmed the address although it is on SendGrid's bounce list."""

    @property
    def held(self) -> Held:
        return Held(self.delivery_id, self.fence)

    def outcome(self, status: DeliveryStatus, error: str | None) -> DeliveryOutcome:
        return DeliveryOutcome(
            self.delivery_id, self.employee_number, self.name, self.username, self.address, status, error
        )


@dataclass(frozen=True)
class _Claim:
    """A delivery claimed by this runner: why it is skipped, or (to send) the new credential stored as
    pending with what was pending before it."""

    target: _Target
    problem: str | None
    stored: tuple[Credential, Pending] | None

    @property
    def delivery_id(self) -> int:
        return self.target.delivery_id


@dataclass(frozen=True)
class _Promotion:
    """A welcome email the mail API accepted: its credential is to become the account's."""

    target: _Target
    credential: Credential
    message_id: str


@dataclass(frozen=True)
class _Ending:
    """A delivery's final status, to record (see `BatchRunner._finish`)."""

    target: _Target
    status: DeliveryStatus
    error: str | None
    action: AuditAction | None
    promotion: _Promotion | None
    discard: tuple[Credential, Pending] | None
    username_tried: bool
    username_message_id: str | None


_Ended = Future[DeliveryOutcome | None]
"""A delivery's ending handed to the writer: its outcome once committed, None if superseded (see
`BatchRunner._finish`)."""

_running: set[BatchRunner] = set()
_running_lock = threading.Lock()
_stopping = threading.Event()
"""Set once this process drains: a runner started later (a job taken as the worker stopped) is drained."""


def drain_all() -> int:
    """Drain every runner of this process (a worker stopping), and any started later; how many were
    running."""
    with _running_lock:
        _stopping.set()
        running = list(_running)
    for runner in running:
        runner.drain()
    return len(running)


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
        self._held: dict[int, int] = {}
        """Claimed deliveries in flight: id -> fencing token."""
        self._lost: set[int] = set()
        """Claimed deliveries another runner took meanwhile (found by a renewal): not to be sent."""
        self._fresh_until = 0.0
        """Until when (monotonic) every lease of this runner is known to be at least 2/3 of a lease
        from running out: after it, a mail thread renews before it sends."""
        self._renewing = threading.Lock()
        self._draining = threading.Event()
        self.drained = False
        """True if this run was drained (the worker stopping) before the batch ended."""
        self._lock = threading.Lock()
        self._claimed: deque[_Claim | DeliveryOutcome] = deque()
        self._unclaimed = 0
        """About how many deliveries are left to claim: how many credentials the next claims take."""
        self._claiming = threading.Lock()
        self._writes: GroupCommit[_Ending, DeliveryOutcome | None] | None = None

    # The run ---------------------------------------------------------------------------------------

    def run(self) -> tuple[BatchSummary, bool]:
        """Send what is left of the batch; (its summary, whether this run ended the batch)."""
        with _running_lock:
            _running.add(self)
            if _stopping.is_set():
                self.drain()
        try:
            return self._run()
        finally:
            with _running_lock:
                _running.discard(self)

    @db_retry
    def _read_batch(self) -> tuple[bool, str | None, int]:
        """(whether the batch is running, why it was stopped, how many deliveries are left)."""
        with self.ctx.sessions() as session:
            batch = session.get(CredentialBatch, self.batch_id)
            if batch is None:
                raise LookupError(f"no credential batch {self.batch_id}")
            self.actor, self.mode = batch.requested_by, batch.mode
            left = session.scalar(
                select(func.count()).where(
                    Delivery.batch_id == self.batch_id,
                    Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                )
            )
            return batch.status == BatchStatus.RUNNING, batch.stop_reason, left or 0

    @db_retry
    def _summary(self) -> BatchSummary:
        with self.ctx.sessions() as session:
            return summarise(session, self.batch_id)

    def _run(self) -> tuple[BatchSummary, bool]:
        running, stop_reason, left = self._read_batch()
        if not running or self._draining.is_set():
            self.drained = running
            return self._summary(), False
        if stop_reason:
            self._stopped(stop_reason)
        heartbeat = threading.Thread(target=self._heartbeat, name="credbot-lease", daemon=True)
        heartbeat.start()
        workers = max(1, min(self.settings.mail_concurrency, left or 1))
        self._unclaimed = left or 0
        if self.mode == "password":
            self._supply = credentials.PasswordSupply(
                self.settings,
                ahead=min(CLAIM_GROUP, self._unclaimed) + 2 * hash_threads(self.settings),
                most=self._unclaimed,
            )
        self._writes = GroupCommit(self._write, linger=WRITE_LINGER_SECONDS, most=WRITE_GROUP)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="credbot-mail") as pool:
                futures = [pool.submit(self._work) for _ in range(workers)]
                crashed = [error for future in futures if (error := future.exception()) is not None]
                # Claims whose commit answer was lost go back to pending and are sent (after a drain,
                # `_release_unsent` lets go of the claims left, their accounts too).
                if not crashed and not self._draining.is_set() and self._release_orphans():
                    futures = [pool.submit(self._work) for _ in range(workers)]
        finally:
            self._writes.close()
            if self._supply is not None:
                self._supply.close()
        self._done.set()
        heartbeat.join()
        seal_now(self.ctx.sessions)
        crashed = [error for future in futures if (error := future.exception()) is not None]
        if crashed:
            self._let_go()
            raise crashed[0]
        if self._draining.is_set():
            self._release_unsent()
        elif self.stopped_because:
            self._skip_the_rest()
        finished = self._try_finish()
        self.drained = self._draining.is_set() and not finished
        return self._summary(), finished

    def drain(self) -> None:
        """The worker is stopping: claim nobody more, end what is in flight, release the rest (`run`)."""
        self._draining.set()

    def _release_unsent(self) -> None:
        """After a drain: the claims no mail thread started go back to pending, their credentials
        discarded and their accounts let go, so another worker takes them at once."""
        left = [claim for claim in self._claimed if isinstance(claim, _Claim)]
        self._claimed.clear()
        if not left:
            return
        writes: GroupCommit[_Ending, DeliveryOutcome | None] = GroupCommit(
            self._write, linger=0, most=WRITE_GROUP
        )
        try:
            ended = [writes.submit(self._release(claim)) for claim in left]
        finally:
            writes.close()
        for done in ended:
            done.result()

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
        ending: deque[_Ended] = deque()  # this thread's ended deliveries, oldest first, until reported
        while True:
            # At most one of them waits for its write while this thread sends the next: with the
            # database away, the batch holds rather than piling up emails that nothing records.
            while ending and (ending[0].done() or len(ending) > 1):
                self._report_ended(ending.popleft())
            if (claimed := self._next()) is None:
                break
            if isinstance(claimed, DeliveryOutcome):  # the employee is being sent to by another batch
                self._report(claimed)
                continue
            ending.append(self._deliver(claimed))
        for ended in ending:
            self._report_ended(ended)

    def _report_ended(self, ended: _Ended) -> None:
        """Report a delivery once its ending committed (not a superseded or released one); the write's
        error (a crash) if it failed."""
        if (outcome := ended.result()) is not None:
            self._report(outcome)

    def _report(self, outcome: DeliveryOutcome) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(outcome)
        except Exception:
            log.exception("progress callback failed for delivery %s", outcome.delivery_id)

    def _heartbeat(self) -> None:
        """Every second: the batch's heartbeat, a stop asked for elsewhere, the audit seal. Every third
        of a lease: this runner's leases (renewed every second, they rewrote every claimed delivery
        and held account that often, as much database work as sending them)."""
        renew_every = self.lease.total_seconds() / 3
        renew_at = time.monotonic() + renew_every
        while not self._done.wait(min(1.0, renew_every)):
            renew = time.monotonic() >= renew_at
            try:
                if renew:
                    self._renew()
                    renew_at = time.monotonic() + renew_every
                self._beat()
            except Exception as error:  # the database away for a moment: the next beat tries again
                log.warning(
                    "the heartbeat of batch %s failed (%s); the next beat tries again",
                    self.batch_id,
                    type(error).__name__,
                    exc_info=not transient(error),  # a known outage is one line, not a traceback
                )
            seal_now(self.ctx.sessions)

    def _beat(self) -> None:
        now = utcnow()
        with self.ctx.sessions.begin() as session:
            session.execute(update(_BATCHES).where(_BATCHES.c.id == self.batch_id).values(heartbeat_at=now))
            reason = session.scalar(select(_BATCHES.c.stop_reason).where(_BATCHES.c.id == self.batch_id))
        if reason:
            self._stopped(reason)

    def _renew(self, if_stale: bool = False) -> None:
        """Renew the leases this runner still holds (fenced: see `claims.renew`); note the ones lost.
        `if_stale`: only if no other thread renewed them meanwhile."""
        with self._renewing:
            started = self.ctx.clock.monotonic()
            if if_stale and started < self._fresh_until:
                return
            with self._lock:
                held = [Held(i, f) for i, f in self._held.items()]
            with self.ctx.sessions.begin() as session:
                lost = claims.renew(session, held, utcnow() + self.lease)
            with self._lock:
                self._lost.update(lost)
                self._fresh_until = started + self.lease.total_seconds() * 2 / 3
        if lost:
            log.warning("batch %s: %d claims were taken by another runner", self.batch_id, len(lost))

    def _still_mine(self, target: _Target) -> bool:
        """Whether this runner may still send for the delivery: its leases were renewed recently enough
        (or are renewed now) and no other runner took it."""
        if self.ctx.clock.monotonic() >= self._fresh_until:
            db_retry(self._renew)(if_stale=True)
        with self._lock:
            return target.delivery_id not in self._lost

    def _let_go(self) -> None:
        """After a crash: make this runner's claims free to take at once (best effort)."""
        try:
            with self.ctx.sessions.begin() as session:
                claims.expire(session, self.runner_id, utcnow())
        except DBAPIError:
            log.warning(
                "could not let go of the claims of batch %s; their leases will run out", self.batch_id
            )

    # Claims ----------------------------------------------------------------------------------------

    @db_retry
    def _release_orphans(self) -> int:
        """Deliveries this run claimed without knowing it (the connection dropped as the claim committed,
        and the retry claimed others): nothing was sent for them, so they go back to pending."""
        with self.ctx.sessions.begin() as session:
            return claims.release_orphans(session, self.batch_id, self.runner_id)

    def _next(self) -> _Claim | DeliveryOutcome | None:
        """The next delivery for a mail thread: from this runner's claimed ones, claiming the next group
        when none is left; None when nothing is left to claim (or the batch was stopped)."""
        with self._claiming:  # one thread claims a group; the others wait for it
            if self._draining.is_set():
                return None  # the claims left are released once the mail threads are done
            if not self._claimed and not self._stop.is_set():
                self._claimed.extend(self._claim_group())
            return self._claimed.popleft() if self._claimed else None

    @db_retry
    def _claim_group(self) -> list[_Claim | DeliveryOutcome]:
        """Claim up to CLAIM_GROUP deliveries and their accounts, check each employee and store the new
        credentials as pending, in one transaction: the claims, and the SKIPPED outcomes of deliveries
        whose employee another delivery is being sent to; empty when nothing is left to claim."""
        fresh = self._new_credentials(min(CLAIM_GROUP, max(self._unclaimed, 1)))
        used: set[int] = set()
        try:
            now = utcnow()
            until = now + self.lease
            started = self.ctx.clock.monotonic()
            with self.ctx.sessions.begin() as session:
                claimed, held = claims.claim(session, self.batch_id, self.runner_id, now, until, CLAIM_GROUP)
                if not claimed:
                    return []
                ids = [h.delivery_id for h in claimed]
                found: list[_Claim | DeliveryOutcome] = []
                busy: list[_Target] = []
                new: dict[int, tuple[_Target, Credential]] = {}
                fences = dict(claimed)
                for target, address, problem in self._targets(session, ids, fences):
                    if target.account_id is not None and target.delivery_id not in held:
                        busy.append(target)
                    elif why := problem or self._why_not_now(target, address):
                        found.append(_Claim(target, why, None))
                    else:
                        assert target.account_id is not None
                        credential = fresh[len(new)] if len(new) < len(fresh) else self._new_credential()
                        new[target.account_id] = (target, credential)
                if busy:
                    found.extend(self._skip_busy(session, busy))
                if new:
                    used.update(range(len(new)))
                    before = credentials.store_pending_many(
                        session, {account_id: credential for account_id, (_, credential) in new.items()}
                    )
                    account_of = (
                        select(_ACCOUNTS.c.id)
                        .where(_ACCOUNTS.c.employee_id == _DELIVERIES.c.employee_id)
                        .scalar_subquery()
                    )
                    session.execute(
                        update(_DELIVERIES)
                        .where(_DELIVERIES.c.id.in_([target.delivery_id for target, _ in new.values()]))
                        .values(account_id=account_of, attempts=_DELIVERIES.c.attempts + 1)
                    )
                    found.extend(
                        _Claim(target, None, (credential, before[account_id]))
                        for account_id, (target, credential) in new.items()
                    )
            # Held (renewed, fenced) once committed: a renewal reading them before would find them still
            # pending and count them as lost.
            skipped = {target.delivery_id for target in busy}
            with self._lock:
                if not self._held:
                    self._fresh_until = started + self.lease.total_seconds() * 2 / 3
                self._held.update(h for h in claimed if h.delivery_id not in skipped)
            self._unclaimed -= len(ids)
            return sorted(found, key=lambda claim: claim.delivery_id)
        finally:
            # A credential never handed to the database cannot have been stored: the next claim takes it.
            # A retried claim takes fresh ones: the lost commit may have stored the others.
            if self._supply is not None:
                for index, credential in enumerate(fresh):
                    if index not in used:
                        self._supply.give_back(credential)

    def _why_not_now(self, target: _Target, address: str | None) -> str | None:
        if address != target.address:
            return ADDRESS_CHANGED
        if self._stop.is_set():
            return f"not sent: {self.stopped_because}"
        return None

    def _new_credentials(self, count: int) -> list[Credential]:
        """Hashed passwords for a group's claims (taken ahead: hashing is what a batch waits for);
        in link mode none, as a link is made when needed."""
        if self._supply is None:
            return []
        return [self._supply.take() for _ in range(count)]

    def _new_credential(self) -> Credential:
        return credentials.make_credential(self.settings, self.mode)

    def _skip_busy(self, session: Session, targets: list[_Target]) -> list[DeliveryOutcome]:
        session.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id.in_([target.delivery_id for target in targets]))
            .values(status=DeliveryStatus.SKIPPED, error=IN_PROGRESS, lease_until=None)
        )
        events = [self._event(target, AuditAction.CREDENTIALS_SKIPPED, IN_PROGRESS) for target in targets]
        record_many(session, self.actor, events)
        return [target.outcome(DeliveryStatus.SKIPPED, IN_PROGRESS) for target in targets]

    def _targets(
        self, session: Session, delivery_ids: Sequence[int], fences: dict[int, int] | None = None
    ) -> list[tuple[_Target, str | None, str | None]]:
        """(target, the employee's address now, why they cannot be mailed now or None) per delivery."""
        rows = session.execute(
            select(
                _DELIVERIES.c.id,
                _DELIVERIES.c.email_address,
                _DELIVERIES.c.confirmed_emailed_at,
                _ACCOUNTS.c.credentials_emailed_at,
                _DELIVERIES.c.bypass_bounce_list,
                _EMPLOYEES.c.employee_number,
                _EMPLOYEES.c.first_name,
                _EMPLOYEES.c.last_name,
                _EMPLOYEES.c.email,
                _EMPLOYEES.c.active,
                _ACCOUNTS.c.id,
                _ACCOUNTS.c.username,
                _ACCOUNTS.c.status,
            )
            .select_from(
                _DELIVERIES.join(_EMPLOYEES, _EMPLOYEES.c.id == _DELIVERIES.c.employee_id).outerjoin(
                    _ACCOUNTS, _ACCOUNTS.c.employee_id == _EMPLOYEES.c.id
                )
            )
            .where(_DELIVERIES.c.id.in_(delivery_ids))
            .order_by(_DELIVERIES.c.id)
        ).all()
        found: list[tuple[_Target, str | None, str | None]] = []
        since = []
        for (
            delivery_id,
            confirmed,
            emailed_confirmed,
            emailed,
            bypass,
            number,
            first,
            last,
            raw,
            active,
            account_id,
            username,
            status,
        ) in rows:
            address, problem = mail_check(active, status, raw)
            if problem is None and _emailed_since(emailed, emailed_confirmed):
                since.append(len(found))
            target = _Target(
                delivery_id=delivery_id,
                fence=(fences or {}).get(delivery_id, 0),
                account_id=account_id,
                employee_number=number,
                first_name=first,
                name=full_name(first, last),
                address=confirmed,
                username=username,
                bypass_bounce_list=bypass,
            )
            found.append((target, address, problem))
        for index in since:  # rare: each one looks up the batch that emailed the employee
            target, address, _ = found[index]
            found[index] = (target, address, EMAILED_SINCE.format(self._emailed_by(session, target)))
        return found

    def _emailed_by(self, session: Session, target: _Target) -> str:
        """The number of the batch whose email last reached the account (for EMAILED_SINCE)."""
        batch_id = session.scalar(
            select(_DELIVERIES.c.batch_id)
            .where(
                _DELIVERIES.c.account_id == target.account_id,
                _DELIVERIES.c.welcome_sent_at.is_not(None),
                _DELIVERIES.c.id != target.delivery_id,
            )
            .order_by(_DELIVERIES.c.welcome_sent_at.desc())
            .limit(1)
        )
        return f"#{batch_id}" if batch_id is not None else "(unknown)"

    # One employee ----------------------------------------------------------------------------------

    def _deliver(self, claim: _Claim) -> _Ended:
        target, problem = claim.target, claim.problem
        if problem is not None:
            action = None if problem.startswith("not sent:") else AuditAction.CREDENTIALS_SKIPPED
            return self._finish(target, DeliveryStatus.SKIPPED, problem, action)
        assert claim.stored is not None
        if self._stop.is_set():  # claimed with its group before the stop: its email never went out
            reason = f"not sent: {self.stopped_because}"
            return self._finish(target, DeliveryStatus.SKIPPED, reason, discard=claim.stored)
        if self._draining.is_set():
            return self._writes_or_fail().submit(self._release(claim))
        if not self._still_mine(target):  # superseded when written (or, if it was ours after all, pending)
            return self._writes_or_fail().submit(self._release(claim))
        welcome = self._welcome(target, claim.stored)
        if not isinstance(welcome, _Promotion):
            return welcome
        return self._username(target, welcome)

    def _welcome(self, target: _Target, stored: tuple[Credential, Pending]) -> _Ended | _Promotion:
        """Send the welcome email with the new credential stored as pending: once it was accepted, the
        promotion to write with the delivery's ending; otherwise the delivery ended."""
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
        return _Promotion(target, credential, message_id)

    def _username(self, target: _Target, promotion: _Promotion) -> _Ended:
        """Send the username email; the delivery ends with the welcome email's credential promoted."""
        what = "set-password link" if self.mode == "link" else "temporary password"
        partial = f"the welcome email was sent and its {what} works, but the username email {{}}"
        if self._stop.is_set():
            error = partial.format(f"was not: {self.stopped_because}") + "; send again to email both"
            return self._finish(
                target, DeliveryStatus.FAILED, error, AuditAction.CREDENTIALS_FAILED, promotion=promotion
            )
        if not self._still_mine(target):  # its ending is superseded: the promotion will not happen
            action = AuditAction.CREDENTIALS_SENT
            return self._finish(target, DeliveryStatus.SENT, None, action, promotion=promotion)
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
                    promotion=promotion,
                    username_tried=True,
                )
            reason = partial.format(f"was not: {error.reason}") + "; send again to email both"
        except Exception as error:
            log.exception("delivery %s failed unexpectedly", target.delivery_id)
            reason = partial.format(f"was not: internal error ({type(error).__name__}; see the logs)")
        else:
            return self._finish(
                target,
                DeliveryStatus.SENT,
                None,
                AuditAction.CREDENTIALS_SENT,
                promotion=promotion,
                username_tried=True,
                username_message_id=message_id,
            )
        return self._finish(
            target,
            DeliveryStatus.FAILED,
            reason,
            AuditAction.CREDENTIALS_FAILED,
            promotion=promotion,
            username_tried=True,
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
            custom_args=custom_args(
                identity(self.settings, self.ctx.sessions, self.ctx.clock).instance_id,
                self.batch_id,
                target.delivery_id,
            ),
            employee_number=target.employee_number,
            bypass_bounce_list=target.bypass_bounce_list,
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
        promotion: _Promotion | None = None,
        discard: tuple[Credential, Pending] | None = None,
        username_tried: bool = False,
        username_message_id: str | None = None,
    ) -> _Ended:
        """Record the delivery's final status (and an audit event), let go of the account: handed to the
        writer, the outcome once it committed.

        `promotion`: the welcome email was accepted; its credential becomes the account's in the same
        transaction.

        `discard`: a credential whose email did not go out, and what was pending before it: it must not
        work, and the earlier one comes back. The account's current password is left alone.
        """
        return self._writes_or_fail().submit(
            _Ending(target, status, error, action, promotion, discard, username_tried, username_message_id)
        )

    def _writes_or_fail(self) -> GroupCommit[_Ending, DeliveryOutcome | None]:
        assert self._writes is not None
        return self._writes

    def _release(self, claim: _Claim) -> _Ending:
        """A claimed delivery whose email was not sent, put back to pending (the worker is stopping, or
        this runner lost its claim)."""
        return _Ending(claim.target, DeliveryStatus.PENDING, None, None, None, claim.stored, False, None)

    @db_retry
    def _write(self, endings: list[_Ending]) -> list[DeliveryOutcome | None]:
        """One transaction for the deliveries the mail threads ended meanwhile (see `GroupCommit`): the
        endings whose claim is still current (the fencing rule); the others are superseded."""
        now = utcnow()
        with self.ctx.sessions.begin() as session:
            mine = claims.current(session, [e.target.held for e in endings])
            current = [e for e in endings if e.target.delivery_id in mine]
            late = [e for e in endings if e.target.delivery_id not in mine]
            self._write_promotions(session, [e.promotion for e in current if e.promotion is not None], now)
            self._write_endings(session, current, now)
            if late:
                record_many(session, self.actor, [self._superseded(e) for e in late])
        with self._lock:
            for ending in endings:
                self._held.pop(ending.target.delivery_id, None)
        for ending in endings:
            log.info(
                "delivery %s: %s%s%s",
                ending.target.delivery_id,
                ending.status,
                f" ({ending.error})" if ending.error else "",
                "" if ending.target.delivery_id in mine else " - superseded, not recorded",
            )
        return [
            e.target.outcome(e.status, e.error)
            if e.target.delivery_id in mine and e.status != DeliveryStatus.PENDING
            else None
            for e in endings
        ]

    def _superseded(self, ending: _Ending) -> tuple[AuditAction, str, dict[str, Any]]:
        """The audit event of a late result: what this runner would have recorded, and its token."""
        action, target, details = self._event(ending.target, AuditAction.CREDENTIALS_SUPERSEDED, SUPERSEDED)
        late = {"late_status": str(ending.status), "late_reason": ending.error, "fence": ending.target.fence}
        accepted = {"welcome_accepted": ending.promotion is not None}
        return action, target, details | late | accepted

    def _write_promotions(self, session: Session, promotions: list[_Promotion], now: datetime) -> None:
        made = []
        for promotion in promotions:
            assert promotion.target.account_id is not None
            credential = promotion.credential
            made.append(
                credentials.Promotion(
                    promotion.target.account_id, credential.secret_hash, credential.expires_at
                )
            )
        if made:
            credentials.promote_many(session, self.mode, made, emailed_by=self.actor, now=now)

    def _write_endings(self, session: Session, endings: list[_Ending], now: datetime) -> None:
        for ending in endings:
            if ending.discard is not None and ending.target.account_id is not None:
                credential, before = ending.discard
                credentials.discard(
                    session, ending.target.account_id, self.mode, credential.secret_hash, before
                )
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
        events = [self._event(e.target, e.action, e.error) for e in endings if e.action is not None]
        record_many(session, self.actor, events)
        seal_later(session)  # the heartbeat seals once a second, not every group

    def _event(
        self, target: _Target, action: AuditAction, reason: str | None
    ) -> tuple[AuditAction, str, dict[str, Any]]:
        """A delivery's audit event, for `record_many`."""
        details = {
            "batch_id": self.batch_id,
            "delivery_id": target.delivery_id,
            "username": target.username,
            "address": target.address,
            "mode": self.mode,
            "reason": reason,
        }
        return action, employee_target(target.employee_number), details

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
                    for target, _, _ in self._targets(session, chunk):
                        self._report(target.outcome(DeliveryStatus.SKIPPED, reason))

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
            if left or schedule.park(session, self.batch_id):  # more deliveries wait for their moment
                return False
            reason = session.scalar(select(_BATCHES.c.stop_reason).where(_BATCHES.c.id == self.batch_id))
            status = BatchStatus.ABORTED if reason else BatchStatus.FINISHED
            ended = session.execute(
                update(_BATCHES)
                .where(_BATCHES.c.id == self.batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
                .values(status=status, error=reason, finished_at=utcnow())
            )
            if rowcount(ended) != 1:
                return False
            counts: dict[str, int] = dict(
                session.execute(
                    select(_DELIVERIES.c.status, func.count())
                    .where(_DELIVERIES.c.batch_id == self.batch_id)
                    .group_by(_DELIVERIES.c.status)
                ).all()
            )
            action = AuditAction.BATCH_ABORTED if reason else AuditAction.BATCH_FINISHED
            details = {str(s): counts.get(s, 0) for s in DeliveryStatus if s not in ("pending", "sending")}
            record(session, self.actor, action, batch_target(self.batch_id), error=reason, **details)
            return True


def _emailed_since(emailed: datetime | None, confirmed: datetime | None) -> bool:
    """Whether the account was emailed after what the admin was shown (`confirmed`, None: never)."""
    return emailed is not None and (confirmed is None or emailed > confirmed)


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


def mark_resumed(
    session: Session, batch_id: int, actor: str, why: str, stale: datetime | None = None
) -> bool:
    """Count a resume of a running batch (only if its heartbeat is older than `stale`, when given)."""
    condition = and_(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.RUNNING)
    if stale is not None:
        condition = and_(condition, or_(_BATCHES.c.heartbeat_at.is_(None), _BATCHES.c.heartbeat_at < stale))
    marked = session.execute(
        update(_BATCHES).where(condition).values(heartbeat_at=utcnow(), resumed=_BATCHES.c.resumed + 1)
    )
    if rowcount(marked) != 1:
        return False
    record(session, actor, AuditAction.BATCH_RESUMED, batch_target(batch_id), reason=why)
    return True
