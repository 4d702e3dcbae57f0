"""The background jobs that run batches, and the sweeper that resumes a batch whose worker stopped.

Web processes and the CLI only start a batch with its job (`start_and_enqueue`: both commit together,
through the outbox, `bot.outbox`); a worker runs it. The batch's source, read from its row, picks the
job that runs it: `send_batch` for the CLI's. The Slack one (it keeps the channel trail) lives in the
Slack adapter, which the core never imports: the entry points register it (`register_runner`, from
`credbot.wiring`). A batch whose source has no runner in the process is refused (`NoRunner`), never run
by another. A run drained by a stopping worker queues the batch again, so another worker takes it up at
once. A scheduled batch is committed with a wake of the scheduler instead (`schedule_and_enqueue`);
`release_scheduled` queues its job at each moment (`bot.sending.schedule`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import jobs, outbox
from bot.context import Context
from bot.sending import schedule
from bot.sending.batches import start_batch
from bot.sending.retry import db_retry
from bot.sending.runs import mark_resumed, resume_stalled
from bot.sending.sender import BatchRunner
from models import BatchSource, BatchStatus, CredentialBatch

log = logging.getLogger(__name__)

BATCH_TIME_LIMIT_MS = 7 * 86_400 * 1000
"""A batch runs as long as it needs: Dramatiq's time limit would interrupt it mid-delivery."""
SCHEDULE_TICK_SECONDS = 5.0
"""How often the worker's scheduler looks for deliveries whose moment came (one indexed query); a moment
within the next tick is also woken for at its second, by a delayed job."""
_TICK = timedelta(seconds=SCHEDULE_TICK_SECONDS)

_runners: dict[str, jobs.Job[..., None]] = {}
"""The job that runs batches from each source (a `BatchSource`)."""


class NoRunner(RuntimeError):
    """No job runs batches from this source in this process: its entry point did not wire one in."""


_after_send: list[jobs.Job[..., None]] = []
"""Jobs queued after each run of a batch, whatever its source (`register_after_send`)."""


@jobs.job(max_retries=5, time_limit_ms=BATCH_TIME_LIMIT_MS)
def send_batch(ctx: Context, batch_id: int, resumed: bool = False) -> None:
    """Run a batch from the CLI."""
    runner = BatchRunner(ctx, batch_id)
    runner.run()
    after_send(ctx, batch_id)
    requeue_if_drained(ctx, runner)


def requeue_if_drained(ctx: Context, runner: BatchRunner) -> None:
    """A run the stopping worker drained: queue the batch again for another worker."""
    if runner.drained:
        log.warning("batch %s was drained (the worker is stopping); queuing it again", runner.batch_id)
        enqueue_batch(ctx, runner.batch_id, resumed=True)


def register_runner(source: BatchSource, runner: jobs.Job[..., None]) -> None:
    """Run batches from `source` with `runner(batch_id, resumed)`."""
    _runners[source] = runner


register_runner(BatchSource.CLI, send_batch)


def register_after_send(job: jobs.Job[..., None]) -> None:
    """Run `job(batch_id)` after each run of a batch, whatever its source (the managers' Slack notices)."""
    if job not in _after_send:
        _after_send.append(job)


def after_send(ctx: Context, batch_id: int) -> None:
    """Queue the follow-up jobs of a batch's run (through the outbox: an unreachable queue loses none)."""
    if not _after_send:
        return
    with ctx.sessions.begin() as session:
        for job in _after_send:
            outbox.stage(session, job, batch_id)
    outbox.relay(ctx)


def runner_for(source: str) -> jobs.Job[..., None]:
    """The job that runs batches from `source`; NoRunner if none is registered in this process."""
    runner = _runners.get(source)
    if runner is None:
        raise NoRunner(
            f"no runner for batches from {source!r} in this process: its entry point must register one "
            "(bot.sending.jobs.register_runner, see credbot.wiring)"
        )
    return runner


def stage_batch(session: Session, batch_id: int, *, resumed: bool = False) -> None:
    """Add the job that runs the batch (its source's runner) to the outbox, in the caller's transaction."""
    source = session.get_one(CredentialBatch, batch_id).source
    outbox.stage(session, runner_for(source), batch_id, resumed)


def enqueue_batch(ctx: Context, batch_id: int, *, resumed: bool = False) -> bool:
    """Hand a started batch to a worker (through the outbox); False if the job queue is unreachable:
    the job waits in the outbox and the batch starts once it is back."""
    with ctx.sessions.begin() as session:
        stage_batch(session, batch_id, resumed=resumed)
    return outbox.relay(ctx)


def start_and_enqueue(
    ctx: Context, employee_ids: Sequence[int], actor: str, source: BatchSource, **options: Any
) -> tuple[int, bool]:
    """Commit a batch together with the job that runs it (`start_batch`'s `options`), then hand the job
    to the queue: (the batch's id, False if the queue is unreachable: it starts once the queue is back)."""

    def enqueue(session: Session, batch_id: int) -> None:
        stage_batch(session, batch_id)

    batch_id = start_batch(ctx, employee_ids, actor, source, enqueue=enqueue, **options)
    return batch_id, outbox.relay(ctx)


def schedule_and_enqueue(
    ctx: Context,
    employee_ids: Sequence[int],
    actor: str,
    source: BatchSource,
    plan: schedule.Schedule,
    planned: Mapping[int, schedule.Moment],
    *,
    before_wake: Callable[[int], None] | None = None,
    **options: Any,
) -> tuple[int, bool]:
    """Commit a scheduled batch (each employee's moment from `planned`) with a wake of the scheduler,
    which sends what is due already at once: (the batch's id, False if the queue is unreachable: the
    worker's tick finds the batch anyway). `before_wake(batch_id)` runs before the wake is handed to the
    queue (Slack's message of the batch, which its trail at the first moment follows)."""

    def wake(session: Session, batch_id: int) -> None:
        outbox.stage(session, release_scheduled)

    due_at = {employee_id: moment.due_at for employee_id, moment in planned.items()}
    batch_id = start_batch(
        ctx, employee_ids, actor, source, enqueue=wake, due_at=due_at, schedule=plan.as_json(), **options
    )
    if before_wake is not None:
        before_wake(batch_id)
    return batch_id, outbox.relay(ctx)


@jobs.job()
def release_scheduled(ctx: Context, woken: bool = False) -> None:
    """The scheduler: deliveries whose moment came (by the context's clock) become pending and their
    batches' jobs are queued with them. A tick (not `woken`) also queues a wake at each moment before
    the next tick, so a moment is met to the second; a wake queues none (a wake early by the clock
    would otherwise wake itself again and again)."""
    now = ctx.clock.now()
    with ctx.sessions.begin() as session:
        released = schedule.release_due(session, now)
        for batch_id, _ in released:
            stage_batch(session, batch_id)
        upcoming = [] if woken else schedule.moments_between(session, now, now + _TICK)
    for batch_id, _ in released:
        log.info("batch %s: deliveries due; sending them", batch_id)
    if released:  # retried while the database is busy: nothing else relays without Redis
        db_retry(outbox.relay)(ctx)
    with contextlib.suppress(*outbox.QUEUE_ERRORS):  # the next tick finds them anyway
        for moment in upcoming:
            release_scheduled.send(True, delay_seconds=(moment - now).total_seconds())


jobs.every(SCHEDULE_TICK_SECONDS)(release_scheduled)


@jobs.job()
def resume_stalled_batches(ctx: Context) -> None:
    """The sweeper: batches whose worker stopped (its heartbeat is older than a lease) run again.

    A batch this process has no runner for is logged as an error and left running, for the next sweep.
    """
    for batch_id, _source in resume_stalled(ctx):
        log.warning("batch %s lost its worker; resuming it", batch_id)
        try:
            enqueue_batch(ctx, batch_id, resumed=True)
        except NoRunner:
            log.exception("batch %s cannot be resumed here", batch_id)


jobs.every(lambda settings: max(1.0, settings.send_lease_seconds / 2))(resume_stalled_batches)


def resume_batch(ctx: Context, batch_id: int, actor: str) -> bool:
    """Resume a running batch by hand (`credbot batches resume N`); False if it is not running."""
    with ctx.sessions.begin() as session:
        status = session.execute(
            select(CredentialBatch.status).where(CredentialBatch.id == batch_id)
        ).scalar_one_or_none()
        if status is None:
            raise LookupError(f"no credential batch {batch_id}")
        if status != BatchStatus.RUNNING or not mark_resumed(session, batch_id, actor, "resumed by hand"):
            return False
    enqueue_batch(ctx, batch_id, resumed=True)
    return True
