"""What the transports send, and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email; its repr leaves out the body, which may hold a password."""

    to_address: str
    to_name: str
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)
    category: str
    """E.g. `credbot-welcome`, `credbot-username`; lets delivery events be matched later."""
    custom_args: dict[str, str] = field(default_factory=dict)
    """E.g. `credbot_batch`, `credbot_delivery`; travel with the message and come back in delivery events."""
    employee_number: str = ""
    """Whose message it is, for people reading the outbox (not sent to the mail API)."""
    bypass_bounce_list: bool = False
    """Deliver even if the address is on SendGrid's bounce list (the admin confirmed it)."""


class MailTransport(Protocol):
    """Hands emails to a mail service; safe to call from several threads at once."""

    def send(self, email: OutgoingEmail) -> str:
        """Send `email`; return the id the service accepted it under."""
        ...


class MailError(Exception):
    """A message was not accepted. `reason` says why and never contains the message body.

    `in_doubt`: the service may have accepted it anyway (a timeout or a lost connection after the request
    was written, or 5xx answers): a credential in it must stay valid until it expires.
    """

    def __init__(self, reason: str, *, in_doubt: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.in_doubt = in_doubt


class MailRejected(MailError):
    """The service refused this one message for good (a 4xx other than 401, 403 and 429)."""


class MailAuthError(MailError):
    """The service refused the credentials (401 or 403): nothing else can be sent either."""


class MailUnavailable(MailError):
    """The service could not be reached or kept failing (429, 5xx, connection error, timeout)."""
