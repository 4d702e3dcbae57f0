"""Credential batches and the per-employee deliveries in them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.accounts import Account
from models.base import Base, utcnow
from models.directory import Employee


class BatchStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class CredentialBatch(Base):
    """One request to email credentials to a set of employees."""

    __tablename__ = "credential_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16))
    """Where the request came from: `slack` or `cli`."""
    channel_id: Mapped[str | None] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    """Set by callers that may submit twice (a retried Slack request); a second batch is refused."""
    mode: Mapped[str] = mapped_column(String(16), default="password")
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    slack_message_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="batch", order_by="Delivery.id")

    def __repr__(self) -> str:
        return f"<CredentialBatch {self.id} {self.status}>"


class Delivery(Base):
    """The welcome and username emails to one employee within a batch."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("credential_batches.id"), index=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    email_address: Mapped[str | None] = mapped_column(String(320))
    """The address used at send time."""
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    welcome_message_id: Mapped[str | None] = mapped_column(String(255))
    username_message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    batch: Mapped[CredentialBatch] = relationship(back_populates="deliveries")
    employee: Mapped[Employee] = relationship()
    account: Mapped[Account | None] = relationship()

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.status}>"
