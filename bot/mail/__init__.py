"""Outgoing mail: rendering, and the SendGrid and outbox transports."""

from __future__ import annotations

import logging
import threading

from bot.mail.message import (
    MailAuthError,
    MailError,
    MailRejected,
    MailTransport,
    MailUnavailable,
    OutgoingEmail,
)
from bot.mail.outbox import OutboxTransport
from bot.mail.render import render_email
from bot.mail.sendgrid import SendGridTransport
from bot.settings import Settings

__all__ = [
    "MailAuthError",
    "MailError",
    "MailRejected",
    "MailTransport",
    "MailUnavailable",
    "OutboxTransport",
    "OutgoingEmail",
    "SendGridTransport",
    "make_transport",
    "outbox_notice",
    "render_email",
]

log = logging.getLogger(__name__)
_announced: set[str] = set()
_lock = threading.Lock()


def outbox_notice(settings: Settings) -> str:
    """The one-line note that mail goes to the outbox folder instead of SendGrid.

    The caller shows it to the user, so `make_transport` does not log it again in this process.
    """
    directory = str(settings.outbox_dir.resolve())
    with _lock:
        _announced.add(directory)
    return (
        f"SENDGRID_API_KEY is not set: emails are written as .eml files to {directory} instead of being sent."
    )


def make_transport(settings: Settings, *, announce: bool = True) -> MailTransport:
    """SendGrid when SENDGRID_API_KEY is set, else the outbox folder (logged once per folder).

    `announce=False` leaves the warning out, for callers that tell the user themselves.
    """
    if not settings.uses_outbox:
        return SendGridTransport(settings)
    directory = str(settings.outbox_dir.resolve())
    with _lock:
        first = directory not in _announced
        _announced.add(directory)
    if announce and first:
        log.warning(outbox_notice(settings))
    return OutboxTransport(settings.outbox_dir, settings.email_from, settings.email_from_name)
