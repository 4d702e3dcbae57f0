"""The background jobs that run batches, and the sweeper that resumes a batch whose worker stopped.

Web processes and the CLI only start a batch and enqueue it (`enqueue_batch`); a worker runs it. A
batch's source picks the job that runs it: `handlers.sending` registers the Slack one (it keeps the
channel trail), any other source runs `send_batch`.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot import jobs
from bot.context import Context
from bot.sending.sender import BatchRunner, mark_resumed, resume_stalled
from models import BatchStatus, CredentialBatch

log = logging.getLogger(__name__)

BATCH_TIME_LIMIT_MS = 7 * 86_400 * 1000
"""A batch runs as long as it needs: Dramatiq's time limit would interrupt it mid-delivery."""

_runners: dict[str, jobs.Job[..., None]] = {}


@jobs.job(max_retries=5, time_limit_ms=BATCH_TIME_LIMIT_MS)
def send_batch(ctx: Context, batch_id: int, resumed: bool = False) -> None:
    """Run a batch (one from the CLI, or any source without a runner of its own)."""
    BatchRunner(ctx, batch_id).run()


def register_runner(source: str, runner: jobs.Job[..., None]) -> None:
    """Run batches from `source` with `runner(batch_id, resumed)` instead of `send_batch`."""
    _runners[source] = runner


def enqueue_batch(ctx: Context, batch_id: int, source: str, *, resumed: bool = False) -> None:
    """Hand a started batch to a worker."""
    jobs.use(ctx)
    _runners.get(source, send_batch).send(batch_id, resumed)


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
