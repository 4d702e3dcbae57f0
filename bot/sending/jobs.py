"""The background jobs that run batches, and the sweeper that resumes a batch whose worker stopped.

Web processes and the CLI only start a batch with its job (`start_and_enqueue`: both commit together,
through the outbox, `bot.outbox`); a worker runs it. A batch's source picks the job that runs it:
`handlers.sending` registers the Slack one (it keeps the channel trail), any other source runs
`send_batch`. A run drained by a stopping worker queues the batch again, so another worker takes it up
at once. A scheduled batch is committed with a wake of the scheduler instead (`schedule_and_enqueue`);
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
from bot.sending.sender import BatchRunner, db_retry, mark_resumed, resume_stalled
from models import BatchStatus, CredentialBatch

log = logging.getLogger(__name__)

BATCH_TIME_LIMIT_MS = 7 * 86_400 * 1000
"""A batch runs as long as it needs: Dramatiq's time limit would interrupt it mid-delivery."""
SCHEDULE_TICK_SECONDS = 5.0
"""How often the worker's scheduler looks for deliveries whose moment came (one indexed query); a moment
within the next tick is also woken for at its second, by a delayed job."""
_TICK = timedelta(seconds=SCHEDULE_TICK_SECONDS)

_runners: dict[str, jobs.Job[..., None]] = {}


@jobs.job(max_retries=5, time_limit_ms=BATCH_TIME_LIMIT_MS)
def send_batch(ctx: Context, batch_id: int, resumed: bool = False) -> None:
    """Run a batch (one from the CLI, or any source without a runner of its own)."""
    runner = BatchRunner(ctx, batch_id)
    runner.run()
    requeue_if_drained(ctx, runner, "cli")


def requeue_if_drained(ctx: Context, runner: BatchRunner, source: str) -> None:
    """A run the stopping worker drained: queue the batch again for another worker."""
    if runner.drained:
        log.warning("batch %s was drained (the worker is stopping); queuing it again", runner.batch_id)
        enqueue_batch(ctx, runner.batch_id, source, resumed=True)


def register_runner(source: str, runner: jobs.Job[..., None]) -> None:
    """Run batches from `source` with `runner(batch_id, resumed)` instead of `send_batch`."""
    _runners[source] = runner


def stage_batch(session: Session, batch_id: int, source: str, *, resumed: bool = False) -> None:
    """Add the job that runs the batch to the outbox, in the caller's transaction."""
    jobs.load_job_modules()  # the runner of each source is registered
    outbox.stage(session, _runners.get(source, send_batch), batch_id, resumed)


def enqueue_batch(ctx: Context, batch_id: int, source: str, *, resumed: bool = False) -> bool:
    """Hand a started batch to a worker (through the outbox); False if the job queue is unreachable:
    the job waits in the outbox and the batch starts once it is back."""
    with ctx.sessions.begin() as session:
        stage_batch(session, batch_id, source, resumed=resumed)
    return outbox.relay(ctx)


def start_and_enqueue(
    ctx: Context, employee_ids: Sequence[int], actor: str, source: str, **options: Any
) -> tuple[int, bool]:
    """Commit a batch together with the job that runs it (`start_batch`'s `options`), then hand the job
    to the queue: (the batch's id, False if the queue is unreachable: it starts once the queue is back)."""

    def enqueue(session: Session, batch_id: int) -> None:
        stage_batch(session, batch_id, source)

    batch_id = start_batch(ctx, employee_ids, actor, source, enqueue=enqueue, **options)
    return batch_id, outbox.relay(ctx)


def schedule_and_enqueue(
    ctx: Context,
    employee_ids: Sequence[int],
    actor: str,
    source: str,
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
        for batch_id, source in released:
            stage_batch(session, batch_id, source)
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
    """The sweeper: batches whose worker stopped (its heartbeat is older than a lease) run again."""
    for batch_id, source in resume_stalled(ctx):
        log.warning("batch %s lost its worker; resuming it", batch_id)
        enqueue_batch(ctx, batch_id, source, resumed=True)


jobs.every(lambda settings: max(1.0, settings.send_lease_seconds / 2))(resume_stalled_batches)


def resume_batch(ctx: Context, batch_id: int, actor: str) -> bool:
    """Resume a running batch by hand (`credbot batches resume N`); False if it is not running."""
    with ctx.sessions.begin() as session:
        row = session.execute(
            select(CredentialBatch.source, CredentialBatch.status).where(CredentialBatch.id == batch_id)
        ).first()
        if row is None:
            raise LookupError(f"no credential batch {batch_id}")
        source, status = row
        if status != BatchStatus.RUNNING or not mark_resumed(session, batch_id, actor, "resumed by hand"):
            return False
    enqueue_batch(ctx, batch_id, source, resumed=True)
    return True
