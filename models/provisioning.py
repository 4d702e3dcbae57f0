"""What the identity provider changed through SCIM, grouped for the HR channel (bot.scim_notices)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class NoticeChange(enum.StrEnum):
    HIRED = "hired"
    """Created through SCIM, and will need credentials."""
    LEFT = "left"
    """Deactivated through SCIM."""


class ScimNotice(Base):
    """One grouped message for the audit channel (at most one a minute); also its outbox: `ts` is empty
    until it is posted."""

    __tablename__ = "scim_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    grouped_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32), index=True)


class ScimNoticePerson(Base):
    """An employee named in a notice, and what happened to them, by which token (`scim:NAME`)."""

    __tablename__ = "scim_notice_people"
    __table_args__ = (Index("ix_scim_notice_people_change_employee", "change", "employee_id"),)

    notice_id: Mapped[int] = mapped_column(
        ForeignKey("scim_notices.id", ondelete="CASCADE"), primary_key=True
    )
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)
    change: Mapped[str] = mapped_column(String(16), primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))


class ScimNoticeMark(Base):
    """How far the grouping has read the audit log (a chain position, `audit_events.seq`: positions are
    given in commit order, so an event committed late is never skipped), and since when changes wait."""

    __tablename__ = "scim_notice_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(default=0)
    waiting_since: Mapped[datetime | None]
