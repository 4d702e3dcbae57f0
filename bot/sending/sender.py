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
a stop asked for, e.g. Ctrl-C in the CLI). A worker stopping drains its runners (`bot.sending.lifecycle`).

Here: what a mail thread does with each delivery. Elsewhere: the SQL of claims and leases (`claims`), of
endings (`endings`) and of the batch (`runs`); the threads, heartbeat, stop and drain (`lifecycle`,
`leases`); the emails (`emails`); the wording of each outcome (`outcomes`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot import credentials
from bot.audit import AuditAction
from bot.context import Context
from bot.credentials import Credential, Pending
from bot.installation import custom_args, identity
from bot.mail import MailAuthError, MailError, MailTransport, make_transport
from bot.sending import claims, endings, outcomes
from bot.sending.batches import BatchSummary, DeliveryOutcome
from bot.sending.claims import CLAIM_GROUP
from bot.sending.emails import username_email, welcome_email
from bot.sending.endings import Ending, Promotion
from bot.sending.lifecycle import BatchRun, Ended
from bot.sending.outcomes import Skip, SkipKind
from bot.sending.retry import db_retry
from bot.sending.targets import Target, read_targets
from models import DeliveryStatus, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Claim:
    """A delivery claimed by this runner: why it is skipped, or (to send) the new credential stored as
    pending with what was pending before it."""

    target: Target
    skip: Skip | None
    stored: tuple[Credential, Pending] | None

    @property
    def delivery_id(self) -> int:
        return self.target.delivery_id


class BatchRunner(BatchRun[_Claim]):
    """One worker's run of a batch: its mail threads (`BatchRun`) claim deliveries and send each."""

    def __init__(
        self,
        ctx: Context,
        batch_id: int,
        transport: MailTransport | None = None,
        on_progress: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        super().__init__(ctx, batch_id, on_progress)
        self.transport = transport or make_transport(ctx.settings)
        self._claimed: deque[_Claim | DeliveryOutcome] = deque()
        self._claiming = threading.Lock()

    def _release_unsent(self) -> None:
        """After a drain: the claims no mail thread started go back to pending, their credentials
        discarded and their accounts let go, so another worker takes them at once."""
        left = [claim for claim in self._claimed if isinstance(claim, _Claim)]
        self._claimed.clear()
        if left:
            self._write_now([self._release(claim) for claim in left])

    # Claims ----------------------------------------------------------------------------------------

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
                busy: list[Target] = []
                new: dict[int, tuple[Target, Credential]] = {}
                fences = dict(claimed)
                for target, address, skip in read_targets(session, ids, fences):
                    if target.account_id is not None and target.delivery_id not in held:
                        busy.append(target)
                    elif why := skip or self._why_not_now(target, address):
                        found.append(_Claim(target, why, None))
                    else:
                        assert target.account_id is not None
                        credential = (
                            fresh[len(new)] if len(new) < len(fresh) else self.mode.make(self.settings)
                        )
                        new[target.account_id] = (target, credential)
                if busy:
                    reason = Skip(SkipKind.IN_PROGRESS).reason
                    endings.write_skipped(session, self.batch, busy, reason)
                    found.extend(target.outcome(DeliveryStatus.SKIPPED, reason) for target in busy)
                if new:
                    used.update(range(len(new)))
                    before = credentials.store_pending_many(
                        session, {account_id: credential for account_id, (_, credential) in new.items()}
                    )
                    claims.attach_accounts(session, [target.delivery_id for target, _ in new.values()])
                    found.extend(
                        _Claim(target, None, (credential, before[account_id]))
                        for account_id, (target, credential) in new.items()
                    )
            # Held (renewed, fenced) once committed: a renewal reading them before would find them still
            # pending and count them as lost.
            skipped = {target.delivery_id for target in busy}
            self._leases.hold((h for h in claimed if h.delivery_id not in skipped), started)
            self._unclaimed -= len(ids)
            return sorted(found, key=lambda claim: claim.delivery_id)
        finally:
            # A credential never handed to the database cannot have been stored: the next claim takes it.
            # A retried claim takes fresh ones: the lost commit may have stored the others.
            if self._supply is not None:
                for index, credential in enumerate(fresh):
                    if index not in used:
                        self._supply.give_back(credential)

    def _why_not_now(self, target: Target, address: str | None) -> Skip | None:
        if address != target.address:
            return Skip(SkipKind.ADDRESS_CHANGED)
        if self._stop.is_set():
            return self._stopped_skip()
        return None

    def _new_credentials(self, count: int) -> list[Credential]:
        """Hashed passwords for a group's claims (taken ahead: hashing is what a batch waits for);
        in link mode none, as a link is made when needed."""
        if self._supply is None:
            return []
        return [self._supply.take() for _ in range(count)]

    # One employee ----------------------------------------------------------------------------------

    def _deliver(self, claim: _Claim) -> Ended:
        target, skip = claim.target, claim.skip
        if skip is not None:
            action = AuditAction.CREDENTIALS_SKIPPED if skip.audited else None
            return self._finish(target, DeliveryStatus.SKIPPED, skip.reason, action)
        assert claim.stored is not None
        if self._stop.is_set():  # claimed with its group before the stop: its email never went out
            reason = self._stopped_skip().reason
            return self._finish(target, DeliveryStatus.SKIPPED, reason, discard=claim.stored)
        if self._draining.is_set():
            return self._submit(self._release(claim))
        if not self._leases.still_mine(target.delivery_id):  # superseded when written (or pending)
            return self._submit(self._release(claim))
        welcome = self._welcome(target, claim.stored)
        if not isinstance(welcome, Promotion):
            return welcome
        return self._username(target, welcome)

    def _welcome(self, target: Target, stored: tuple[Credential, Pending]) -> Ended | Promotion:
        """Send the welcome email with the new credential stored as pending: once it was accepted, the
        promotion to write with the delivery's ending; otherwise the delivery ended."""
        credential = stored[0]
        try:
            try:
                email = welcome_email(
                    self.settings, self.mode, target, self._custom_args(target), credential.email
                )
                message_id = self.transport.send(email)
            finally:
                credential.email.clear()  # the plaintext exists only until it is handed to the mail API
        except MailError as error:
            if isinstance(error, MailAuthError):
                self.stop(error.reason)
            if error.in_doubt:
                reason = outcomes.welcome_in_doubt(self.mode.noun, error.reason)
                return self._finish(target, DeliveryStatus.IN_DOUBT, reason, AuditAction.CREDENTIALS_IN_DOUBT)
            reason = outcomes.welcome_not_sent(error.reason)
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, discard=stored
            )
        except Exception as error:
            log.exception("delivery %s failed unexpectedly", target.delivery_id)
            reason = outcomes.welcome_not_sent(outcomes.internal_error(error))
            return self._finish(
                target, DeliveryStatus.FAILED, reason, AuditAction.CREDENTIALS_FAILED, discard=stored
            )
        return Promotion(target, credential, message_id)

    def _username(self, target: Target, promotion: Promotion) -> Ended:
        """Send the username email; the delivery ends with the welcome email's credential promoted."""
        works = self.mode.credential
        if self._stop.is_set():
            error = outcomes.username_not_sent(works, str(self.stopped_because))
            return self._finish(
                target, DeliveryStatus.FAILED, error, AuditAction.CREDENTIALS_FAILED, promotion=promotion
            )
        if not self._leases.still_mine(target.delivery_id):  # its ending is superseded: no promotion
            action = AuditAction.CREDENTIALS_SENT
            return self._finish(target, DeliveryStatus.SENT, None, action, promotion=promotion)
        try:
            email = username_email(self.settings, self.mode, target, self._custom_args(target))
            message_id = self.transport.send(email)
        except MailError as error:
            if isinstance(error, MailAuthError):
                self.stop(error.reason)
            if error.in_doubt:
                return self._finish(
                    target,
                    DeliveryStatus.IN_DOUBT,
                    outcomes.username_in_doubt(works, error.reason),
                    AuditAction.CREDENTIALS_IN_DOUBT,
                    promotion=promotion,
                    username_tried=True,
                )
            reason = outcomes.username_not_sent(works, error.reason)
        except Exception as error:
            log.exception("delivery %s failed unexpectedly", target.delivery_id)
            reason = outcomes.username_failed(works, error)
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

    def _custom_args(self, target: Target) -> dict[str, str]:
        instance = identity(self.settings, self.ctx.sessions, self.ctx.clock).instance_id
        return custom_args(instance, self.batch_id, target.delivery_id)

    def _finish(
        self,
        target: Target,
        status: DeliveryStatus,
        error: str | None,
        action: AuditAction | None = None,
        *,
        promotion: Promotion | None = None,
        discard: tuple[Credential, Pending] | None = None,
        username_tried: bool = False,
        username_message_id: str | None = None,
    ) -> Ended:
        """Record the delivery's final status (and an audit event), let go of the account: handed to the
        writer, the outcome once it committed.

        `promotion`: the welcome email was accepted; its credential becomes the account's in the same
        transaction. `discard`: a credential whose email did not go out (see `Ending.discard`).
        """
        return self._submit(
            Ending(target, status, error, action, promotion, discard, username_tried, username_message_id)
        )

    def _release(self, claim: _Claim) -> Ending:
        """A claimed delivery whose email was not sent, put back to pending (the worker is stopping, or
        this runner lost its claim)."""
        return Ending(claim.target, DeliveryStatus.PENDING, None, None, None, claim.stored, False, None)


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
