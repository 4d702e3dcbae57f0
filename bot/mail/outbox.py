"""The outbox transport: each message becomes an RFC 5322 `.eml` file that any mail client opens."""

from __future__ import annotations

import os
import re
import uuid
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path

from bot.mail.message import MailUnavailable, OutgoingEmail
from models import utcnow

_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._]+")
"""Anything else in an employee number becomes `_` in the file name (no `/`, no leading `-`)."""


class OutboxTransport:
    """Writes `OUTBOX_DIR/<timestamp>-<category>-<employee number>-<id>.eml` (readable by the owner only)."""

    def __init__(self, directory: Path, from_address: str, from_name: str) -> None:
        self.directory = Path(directory)
        self.from_address = from_address
        self.from_name = from_name
        self._domain = from_address.rpartition("@")[2] or "credbot.invalid"

    def __repr__(self) -> str:
        return f"<OutboxTransport {self.directory}>"

    def send(self, email: OutgoingEmail) -> str:
        """Write `email` as a multipart/alternative (text, then HTML) file; return its Message-ID."""
        now = utcnow()
        unique = uuid.uuid4().hex
        message_id = f"{unique}@{self._domain}"
        message = EmailMessage()
        message["From"] = formataddr((self.from_name, self.from_address))
        message["To"] = formataddr((email.to_name, email.to_address))
        message["Subject"] = email.subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = f"<{message_id}>"
        message["X-Credbot-Category"] = email.category
        for key, value in sorted(email.custom_args.items()):
            message[f"X-Credbot-{key.replace('_', '-').title()}"] = value
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")

        whose = _FILE_NAME_UNSAFE.sub("_", email.employee_number)[:64]
        name = "-".join(filter(None, [f"{now:%Y%m%dT%H%M%S%f}Z", email.category, whose, unique]))
        path = self.directory / f"{name}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # O_EXCL: never overwrite; 0o600: the file may hold a temporary password.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise MailUnavailable(
                f"could not write to the outbox {self.directory}: {error.strerror}"
            ) from None
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(message.as_bytes(policy=SMTP))
        except OSError as error:
            path.unlink(missing_ok=True)  # no half-written message
            raise MailUnavailable(
                f"could not write to the outbox {self.directory}: {error.strerror}"
            ) from None
        return message_id
