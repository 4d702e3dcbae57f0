"""The outbox relay: jobs committed with their change, handed to the queue, and never stuck."""

from __future__ import annotations

import sqlalchemy as sa

from bot import jobs, outbox
from bot.context import Context
from models import OutboxJob


def test_a_job_this_release_no_longer_has_is_dropped_not_blocking_the_rest(context: Context) -> None:
    jobs.configure(context, redis_url="")
    with context.sessions.begin() as session:
        session.add(OutboxJob(job="bot.gone.old_job", args=[1]))
    assert outbox.relay(context)
    with context.sessions() as check:
        assert check.scalars(sa.select(OutboxJob)).all() == []
