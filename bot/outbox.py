"""The transactional outbox: a job is committed with the change that needs it, then handed to the queue.

`stage(session, job, *args)` adds the job in the caller's transaction (a batch and the job that runs it
commit together, or neither does). `relay(ctx)` hands what is waiting to the job queue (Dramatiq) and
deletes it; with the queue unreachable it leaves it waiting and says so, and the `Relay` thread of every
`credbot worker` tries again each second. A job may so reach the queue twice (the process stopping
between the hand-over and the delete): every job run through the outbox is safe to run twice.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import redis
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot import jobs
from bot.context import Context
from models import OutboxJob

log = logging.getLogger(__name__)

RELAY_GROUP = 100
RELAY_SECONDS = 1.0
QUEUE_ERRORS = (redis.RedisError, dramatiq.errors.BrokerError, OSError)
"""What an unreachable job queue raises."""

_OUTBOX = OutboxJob.__table__


def stage(session: Session, job: jobs.Job[..., Any], *args: Any) -> None:
    """Add a run of `job` (JSON `args`) in the caller's transaction; `relay` hands it to the queue."""
    session.execute(_OUTBOX.insert().values(job=job.name, args=list(args), attempts=0))


def relay(ctx: Context) -> bool:
    """Hand every waiting job to the queue; False if the queue is unreachable (they keep waiting)."""
    jobs.use(ctx)
    while True:
        with ctx.sessions.begin() as session:
            waiting = session.execute(
                select(_OUTBOX.c.id, _OUTBOX.c.job, _OUTBOX.c.args)
                .order_by(_OUTBOX.c.id)
                .limit(RELAY_GROUP)
                # Another relay's jobs are waited for, not skipped: once it committed they are gone
                # (handed over) or still here (the queue unreachable), and the answer is true either way.
                .with_for_update()
            ).all()
            if not waiting:
                return True
            handed: list[int] = []
            try:
                for job_id, name, args in waiting:
                    if name in jobs.declared():
                        jobs.by_name(name).send(*args)
                    else:  # a job this release no longer has: it can never run, and must not block the rest
                        log.error("outbox job %s names an unknown job %r; dropped", job_id, name)
                    handed.append(job_id)
            except QUEUE_ERRORS as error:
                failed = waiting[len(handed)][0]
                session.execute(
                    update(_OUTBOX)
                    .where(_OUTBOX.c.id == failed)
                    .values(
                        attempts=_OUTBOX.c.attempts + 1, last_error=f"{type(error).__name__}: {error}"[:500]
                    )
                )
                log.warning(
                    "the job queue is unreachable (%s); %d jobs wait in the outbox", error, len(waiting)
                )
                return False
            finally:
                if handed:
                    session.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_(handed)))


class Relay:
    """A thread relaying the outbox every `seconds` (in `credbot worker`), until `stop`."""

    def __init__(self, ctx: Context, seconds: float = RELAY_SECONDS) -> None:
        self.ctx, self.seconds = ctx, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="credbot-outbox", daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                relay(self.ctx)
            except Exception as error:  # the database away for a moment: the next round tries again
                log.warning("the outbox relay failed (%s); trying again", type(error).__name__)
