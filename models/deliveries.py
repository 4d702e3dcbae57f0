"""Credential batches and the per-employee deliveries in them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.accounts import Account
from models.base import Base, utcnow
from models.directory import Employee


class BatchSource(enum.StrEnum):
    """Where a batch was requested; it picks the job that runs the batch (`bot.sending.jobs`)."""

    SLACK = "slack"
    """In Slack: run with its channel trail, by the runner the entry points wire in."""
    CLI = "cli"


class BatchStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    """Waiting for its deliveries' moments (`bot.sending.schedule`); nothing of it runs meanwhile."""
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class DeliveryStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    """Waiting for its moment (`due_at`); the scheduler makes it pending then."""
    PENDING = "pending"
    SENDING = "sending"
    """Claimed by a worker under a lease (`lease_until`); taken up again when the lease runs out."""
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    IN_DOUBT = "in_doubt"
    """The mail API may have accepted the welcome email: its credential stays valid until it expires."""


class CredentialMode(enum.StrEnum):
    """What the welcome email carries (CREDENTIAL_MODE); the value is kept with each batch."""

    PASSWORD = "password"  # noqa: S105 (a mode name)
    """A temporary password, to change at first sign-in."""
    LINK = "link"
    """A single-use link to set a password."""


class CredentialBatch(Base):
    """One request to email credentials to a set of employees."""

    __tablename__ = "credential_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16))
    """Where the request came from: a `BatchSource`."""
    channel_id: Mapped[str | None] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    """Set by callers that may submit twice (a retried Slack request); a second batch is refused."""
    mode: Mapped[str] = mapped_column(String(16), default=CredentialMode.PASSWORD)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    slack_message_ts: Mapped[str | None] = mapped_column(String(32))
    slack_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The summary message as posted (channel, ts, text, blocks), to add the delivery line to it later."""
    delivery_update_due_at: Mapped[datetime | None]
    """When the summary's delivery line is next to be updated; None: nothing new to show."""
    delivery_updated_at: Mapped[datetime | None]
    """When the summary's delivery line was last updated in Slack."""
    heartbeat_at: Mapped[datetime | None]
    """Last sign of life of a worker running the batch; a running batch without one is resumed."""
    stop_reason: Mapped[str | None] = mapped_column(Text)
    """Set to stop a running batch (Ctrl-C in the CLI): deliveries not started are skipped with it."""
    resumed: Mapped[int] = mapped_column(default=0)
    """How many times the batch was taken up again after its worker stopped."""
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What the admin confirmed for a scheduled batch (`bot.sending.schedule.Schedule`); None: sent now."""
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
    """The address the admin confirmed; an employee whose address changed since is skipped."""
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING, index=True)
    lease_until: Mapped[datetime | None]
    """While SENDING: when the claim runs out unless its worker renews it."""
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime | None]
    """A scheduled delivery's moment (UTC): the scheduler makes it pending then; None: at once."""
    fence: Mapped[int] = mapped_column(default=0, server_default="0")
    """The fencing token: raised by every claim. A runner's ending, promotion and lease renewal take
    effect only while the delivery still carries the token its claim returned."""
    confirmed_emailed_at: Mapped[datetime | None]
    """When the employee was last emailed, as the admin was shown it (None: never): emailed since by
    another batch, the employee is skipped at send time."""
    welcome_sent_at: Mapped[datetime | None]
    """When the mail API accepted the welcome email (its credential promoted)."""
    welcome_message_id: Mapped[str | None] = mapped_column(String(255))
    username_message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    mail_state: Mapped[str | None] = mapped_column(String(16))
    """What SendGrid's events say happened to the emails (a MailState); None: no event yet."""
    mail_state_at: Mapped[datetime | None]
    """When the event that decided `mail_state` happened."""
    mail_reason: Mapped[str | None] = mapped_column(Text)
    """Why, in plain words, for a bounce, drop, block or deferral."""
    problem_posted_at: Mapped[datetime | None]
    """When the bounce, drop or block was posted in the batch's Slack thread (once)."""
    manager_notified_at: Mapped[datetime | None]
    """When the employee's manager was told in Slack that these credentials went out (MANAGER_NOTICES);
    set before the message is posted, so that each manager is told at most once."""
    bypass_bounce_list: Mapped[bool] = mapped_column(default=False)
    """The admin confirmed this address although SendGrid's bounce list holds it: both emails bypass the
    list (SendGrid's `bypass_bounce_management`), so a mailbox created since the bounce gets them."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    batch: Mapped[CredentialBatch] = relationship(back_populates="deliveries")
    employee: Mapped[Employee] = relationship()
    account: Mapped[Account | None] = relationship()

    __table_args__ = (Index("ix_deliveries_status_due_at", "status", "due_at"),)

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.status}>"


class Installation(Base):
    """This credbot installation's id, made on first use: every email carries it, and events for mail
    sent by another installation sharing the SendGrid account are ignored (unless CREDBOT_INSTANCE is set)."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the id was made: deliveries created before it were sent with the old custom args."""


class DeliveryEvent(Base):
    """One SendGrid Event Webhook event about a delivery's emails (addresses are not copied here)."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str] = mapped_column(String(100), unique=True)
    """SendGrid's event id: a retried POST stores nothing twice."""
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    email: Mapped[str] = mapped_column(String(16))
    """Which of the delivery's emails: `welcome`, `username`, or `` when the event does not say."""
    event: Mapped[str] = mapped_column(String(32))
    """processed, deferred, delivered, bounce, blocked (a bounce of type blocked), dropped, spamreport."""
    occurred_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    """SendGrid's reason or the mail server's response, as given."""
    status: Mapped[str | None] = mapped_column(String(32))
    """The SMTP status of a bounce, e.g. 5.1.1."""
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    """Pruned DELIVERY_EVENTS_RETENTION_DAYS after this; the delivery keeps its state."""

    def __repr__(self) -> str:
        return f"<DeliveryEvent {self.id} {self.event} delivery={self.delivery_id}>"
