"""The daily digest: whose credentials are about to expire, whose expired unused, who is locked.

`build_digest` gathers it; `credbot digest` prints it and handlers.digest posts it to AUDIT_CHANNEL_ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.onboarding import Person, Stage, expired_since, stage_count, stage_page
from models import utcnow

MAX_LISTED = 2000
"""People listed per part; beyond that the digest gives the count (the CSV report has everyone)."""


@dataclass(frozen=True)
class Digest:
    at: datetime
    expiring: list[Person]
    """Credentials that stop working within 24 hours, soonest first."""
    expired_recently: list[Person]
    """Credentials that expired unused in the last 24 hours."""
    expired_total: int
    """Everyone whose emailed credential expired unused, however long ago."""
    locked: list[Person]
    counts: dict[Stage, int]

    @property
    def empty(self) -> bool:
        return not (self.expiring or self.expired_recently or self.locked)


def build_digest(session: Session, now: datetime | None = None) -> Digest:
    now = now or utcnow()
    since = now - timedelta(hours=24)
    counts = {
        stage: stage_count(session, stage, now) for stage in (Stage.EXPIRING, Stage.EXPIRED, Stage.LOCKED)
    }
    return Digest(
        at=now,
        expiring=stage_page(session, Stage.EXPIRING, 0, MAX_LISTED, now),
        expired_recently=expired_since(session, since, now, MAX_LISTED),
        expired_total=counts[Stage.EXPIRED],
        locked=stage_page(session, Stage.LOCKED, 0, MAX_LISTED, now),
        counts=counts,
    )
