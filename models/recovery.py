"""Requests from the portal's "Didn't get your email, or it expired?" page that wait for an admin."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.accounts import Account
from models.base import Base, utcnow


class RecoveryStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class RecoveryRequest(Base):
    """An invited employee's request for new credentials, approved or denied in Slack.

    Repeated requests while one is pending only update it (`request_count`, the newest client), so an
    admin sees one card per person. The row is also the card's outbox: `card_ts` is empty until posted.
    """

    __tablename__ = "recovery_requests"
    __table_args__ = (Index("ix_recovery_requests_account_status", "account_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=RecoveryStatus.PENDING, index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    request_count: Mapped[int] = mapped_column(default=1)
    expires_at: Mapped[datetime]
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    card_channel: Mapped[str | None] = mapped_column(String(32))
    card_ts: Mapped[str | None] = mapped_column(String(32))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)

    account: Mapped[Account] = relationship()

    def __repr__(self) -> str:
        return f"<RecoveryRequest {self.id} account={self.account_id} {self.status}>"
