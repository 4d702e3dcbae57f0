"""The transactional outbox: jobs committed with the change that needs them, handed to the queue after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class OutboxJob(Base):
    """A job to enqueue (a batch to run, a notice to send), written in the transaction that needs it.

    A relay hands it to the job queue and deletes it; while the queue is unreachable it waits here.
    """

    __tablename__ = "outbox_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(200))
    """The job's name (`bot.jobs.Job.name`)."""
    args: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    """Failed hand-overs so far (the queue unreachable)."""
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<OutboxJob {self.id} {self.job}>"
