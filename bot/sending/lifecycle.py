"""A batch run's threads: its mail threads, the writer of their endings, the heartbeat, a stop, a drain,
and the batch's end. What each mail thread does with a delivery is the runner's (`bot.sending.sender`).

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
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError

from bot import credential_modes
from bot.audit import seal_now
from bot.chunks import chunks
from bot.context import Context
from bot.credentials import PasswordSupply, hash_threads
from bot.sending import claims, endings, runs
from bot.sending.batches import BatchSummary, DeliveryOutcome, request_stop, summarise
from bot.sending.endings import Ending
from bot.sending.group_commit import GroupCommit
from bot.sending.leases import Leases, heartbeat
from bot.sending.outcomes import Skip, SkipKind
from bot.sending.retry import db_retry
from bot.sending.targets import read_targets
from models import CredentialMode, DeliveryStatus, utcnow

log = logging.getLogger(__name__)

WRITE_GROUP = 128
WRITE_LINGER_SECONDS = 0.2
"""How long the writer gathers endings before writing them in one transaction (a mail thread goes on
meanwhile)."""

Ended = Future[DeliveryOutcome | None]
"""A delivery's ending handed to the writer: its outcome once committed, None if superseded or released
(see `BatchRun._write`)."""
Claim = TypeVar("Claim")

_running: set[BatchRun[Any]] = set()
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


class BatchRun(ABC, Generic[Claim]):
    """One worker's run of a batch: a pool of mail threads taking claimed deliveries until none is left.
    A subclass claims them (`_next`), delivers each (`_deliver`), releases the unsent (`_release_unsent`)."""

    def __init__(
        self, ctx: Context, batch_id: int, on_progress: Callable[[DeliveryOutcome], None] | None = None
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.batch_id = batch_id
        self.on_progress = on_progress
        self.runner_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=self.settings.send_lease_seconds)
        self.batch = endings.Batch(batch_id, "", CredentialMode.PASSWORD)
        """Who asked for the batch, and its credential mode (read as the run starts)."""
        self.mode = credential_modes.of(self.batch.mode)
        self.stopped_because: str | None = None
        self._stop = threading.Event()
        self._supply: PasswordSupply | None = None
        self._done = threading.Event()
        self._leases = Leases(ctx, batch_id, self.lease)
        self._draining = threading.Event()
        self.drained = False
        """True if this run was drained (the worker stopping) before the batch ended."""
        self._lock = threading.Lock()
        self._unclaimed = 0
        """About how many deliveries are left to claim: how many credentials the next claims take."""
        self._writes: GroupCommit[Ending, DeliveryOutcome | None] | None = None

    @abstractmethod
    def _next(self) -> Claim | DeliveryOutcome | None:
        """The next delivery for a mail thread (an outcome: one that ended as it was claimed); None when
        nothing is left."""

    @abstractmethod
    def _deliver(self, claim: Claim) -> Ended:
        """Send for one claimed delivery; its ending, handed to the writer."""

    @abstractmethod
    def _release_unsent(self) -> None:
        """After a drain: the claims no mail thread started go back to pending."""

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
    def _read_batch(self) -> runs.Run:
        with self.ctx.sessions() as session:
            run = runs.read(session, self.batch_id)
        self.batch = endings.Batch(self.batch_id, run.actor, run.mode)
        self.mode = credential_modes.of(run.mode)
        return run

    @db_retry
    def _summary(self) -> BatchSummary:
        with self.ctx.sessions() as session:
            return summarise(session, self.batch_id)

    def _run(self) -> tuple[BatchSummary, bool]:
        run = self._read_batch()
        if not run.running or self._draining.is_set():
            self.drained = run.running
            return self._summary(), False
        if run.stop_reason:
            self._stopped(run.stop_reason)
        beating = threading.Thread(
            target=heartbeat,
            args=(self._leases, self._done, self._stopped),
            name="credbot-lease",
            daemon=True,
        )
        beating.start()
        workers = max(1, min(self.settings.mail_concurrency, run.left or 1))
        self._unclaimed = run.left
        ahead = min(claims.CLAIM_GROUP, self._unclaimed) + 2 * hash_threads(self.settings)
        self._supply = self.mode.supply(self.settings, ahead=ahead, most=self._unclaimed)
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
        beating.join()
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

    def stop(self, reason: str) -> None:
        """Stop the batch, in every process running it: no more API calls."""
        self._stopped(reason)
        try:
            request_stop(self.ctx.sessions, self.batch_id, reason)
        except DBAPIError:
            log.warning("could not record the stop of batch %s; the heartbeat will try again", self.batch_id)

    def _stopped(self, reason: str) -> None:
        with self._lock:
            if self.stopped_because is None:
                self.stopped_because = reason
        self._stop.set()

    def _stopped_skip(self) -> Skip:
        """Why a delivery not sent after the stop was skipped."""
        return Skip(SkipKind.STOPPED, str(self.stopped_because))

    def _work(self) -> None:
        ending: deque[Ended] = deque()  # this thread's ended deliveries, oldest first, until reported
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

    def _report_ended(self, ended: Ended) -> None:
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

    def _let_go(self) -> None:
        """After a crash: make this runner's claims free to take at once (best effort)."""
        try:
            with self.ctx.sessions.begin() as session:
                claims.expire(session, self.runner_id, utcnow())
        except DBAPIError:
            log.warning(
                "could not let go of the claims of batch %s; their leases will run out", self.batch_id
            )

    @db_retry
    def _release_orphans(self) -> int:
        """Deliveries this run claimed without knowing it (the connection dropped as the claim committed,
        and the retry claimed others): nothing was sent for them, so they go back to pending."""
        with self.ctx.sessions.begin() as session:
            return claims.release_orphans(session, self.batch_id, self.runner_id)

    # The writer ------------------------------------------------------------------------------------

    def _submit(self, ending: Ending) -> Ended:
        """Hand an ending to the writer (see `_write`)."""
        assert self._writes is not None
        return self._writes.submit(ending)

    def _write_now(self, ended: list[Ending]) -> None:
        """Write endings at once, outside the mail threads (after a drain)."""
        writes: GroupCommit[Ending, DeliveryOutcome | None] = GroupCommit(
            self._write, linger=0, most=WRITE_GROUP
        )
        try:
            written = [writes.submit(ending) for ending in ended]
        finally:
            writes.close()
        for done in written:
            done.result()

    @db_retry
    def _write(self, ended: list[Ending]) -> list[DeliveryOutcome | None]:
        """One transaction for the deliveries the mail threads ended meanwhile (see `GroupCommit`): the
        endings whose claim is still current (the fencing rule); the others are superseded."""
        with self.ctx.sessions.begin() as session:
            mine = endings.write(session, self.batch, ended, utcnow())
        self._leases.ended(e.target.delivery_id for e in ended)
        for ending in ended:
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
            for e in ended
        ]

    # The end of the batch --------------------------------------------------------------------------

    @db_retry
    def _skip_the_rest(self) -> None:
        """After a stop: every delivery still pending is SKIPPED with the reason (and reported)."""
        reason = self._stopped_skip().reason
        with self.ctx.sessions.begin() as session:
            ids = runs.skip_pending(session, self.batch_id, reason)
        if self.on_progress:
            with self.ctx.sessions() as session:
                for chunk in chunks(ids):
                    for target, _, _ in read_targets(session, chunk):
                        self._report(target.outcome(DeliveryStatus.SKIPPED, reason))

    @db_retry
    def _try_finish(self) -> bool:
        """End the batch if nothing is pending or in flight any more; True if this call ended it."""
        with self.ctx.sessions.begin() as session:
            return runs.finish_if_done(session, self.batch_id, self.batch.actor)
