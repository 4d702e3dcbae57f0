"""Helpers for the credentials tests: reading sent mail back, dumping the database, sending a batch."""

from __future__ import annotations

import email
import re
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.orm import Session

from bot.context import Context
from bot.mail import MailTransport, SendGridTransport
from bot.sending.batches import BatchSummary, DeliveryOutcome, start_batch
from bot.sending.sender import run_batch
from models import Base, BatchSource
from tests.standins.sendgrid import SendGridStandIn

PASSWORD_LINE = re.compile(r"temporary password:\s+(\S+)")
SETUP_LINK = re.compile(r"/setup/([A-Za-z0-9_-]+)")


def outbox_messages(directory: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=default)
        for path in sorted(directory.glob("*.eml"))
    ]


def outbox_text(directory: Path, address: str, category: str) -> str:
    """The plain-text body of the one outbox message of `category` to `address`."""
    (message,) = [
        m
        for m in outbox_messages(directory)
        if address.lower() in m["To"].lower() and m["X-Credbot-Category"] == category
    ]
    return body_text(message)


def body_text(message: EmailMessage, subtype: str = "plain") -> str:
    """The message's text/`subtype` body; the test fails when it has none."""
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} body"
    text: str = part.get_content()
    return text


def standin_text(standin: SendGridStandIn, address: str, category: str) -> str:
    """The plain-text content of the newest accepted message of `category` to `address`."""
    messages = [m for m in standin.sent_to(address) if category in m.get("categories", [])]
    text: str = messages[-1]["content"][0]["value"]
    return text


def password_in(text: str) -> str:
    match = PASSWORD_LINE.search(text)
    assert match, "no temporary password in the email"
    return match.group(1)


def dump_database(session: Session) -> str:
    """Every column of every row of every table, as one string."""
    parts = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(sa.select(table)):
            parts.append(repr(tuple(row)))
    return "\n".join(parts)


def send_credentials(
    ctx: Context,
    employee_ids: Sequence[int],
    actor: str,
    source: BatchSource,
    transport: MailTransport | None = None,
    on_progress: Callable[[DeliveryOutcome], None] | None = None,
    **start: Any,
) -> BatchSummary:
    """Start a batch and run it in this thread, as a worker does (start_batch + run_batch)."""
    batch_id = start_batch(ctx, employee_ids, actor, source, **start)
    return run_batch(ctx, batch_id, transport=transport, on_progress=on_progress)


def sendgrid_context(context: Context, standin: SendGridStandIn, **overrides: Any) -> Context:
    settings = context.settings.model_copy(
        update={
            "sendgrid_api_key": SecretStr(standin.api_key),
            "sendgrid_api_host": standin.url,
            "sendgrid_timeout_seconds": 0.5,
            **overrides,
        }
    )
    return Context(settings=settings, sessions=context.sessions)


def sendgrid_transport(ctx: Context, attempts: int = 2) -> SendGridTransport:
    return SendGridTransport(ctx.settings, attempts=attempts, backoff_seconds=0.01, max_backoff_seconds=0.05)
