"""Why a delivery ended as it did: the kinds the sender decides on, and their wording, in one place.

Control flow reads the kind (`Skip.kind`); the reason stored with the delivery, shown to admins and
audited is derived from it here and never parsed back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

INTERRUPTED = "interrupted (Ctrl-C)"
"""The stop reason of a batch whose CLI run was interrupted."""
SUPERSEDED = "superseded: this runner lost its claim (stalled past its lease) and another runner took it"
ADDRESS_CHANGED = "address changed since the batch was confirmed"
IN_PROGRESS = "a send for this employee is in progress"
EMAILED_SINCE = "emailed by batch {} after you confirmed"
_MAY_HAVE_ARRIVED = "may have been delivered; the {} in that email works if it arrived"
MAY_HAVE_ARRIVED = _MAY_HAVE_ARRIVED.format("password")


class SkipKind(enum.StrEnum):
    """Why a delivery was not sent."""

    UNMAILABLE = "unmailable"
    """The employee cannot be mailed now (`recipients.mail_check`, whose words are the reason)."""
    ADDRESS_CHANGED = "address_changed"
    """The address is not the one the admin confirmed."""
    EMAILED_SINCE = "emailed_since"
    """Another batch emailed the employee after the admin confirmed (the detail: which one)."""
    IN_PROGRESS = "in_progress"
    """Another delivery holds the employee's account."""
    STOPPED = "stopped"
    """The batch was stopped before this email went out (the detail: why)."""


@dataclass(frozen=True)
class Skip:
    """A delivery skipped: its kind and what the wording needs."""

    kind: SkipKind
    detail: str = ""

    @property
    def audited(self) -> bool:
        """Whether the skip gets its own audit event: a stop is audited once, with the batch's end."""
        return self.kind is not SkipKind.STOPPED

    @property
    def reason(self) -> str:
        match self.kind:
            case SkipKind.UNMAILABLE:
                return self.detail
            case SkipKind.ADDRESS_CHANGED:
                return ADDRESS_CHANGED
            case SkipKind.EMAILED_SINCE:
                return EMAILED_SINCE.format(self.detail)
            case SkipKind.IN_PROGRESS:
                return IN_PROGRESS
            case SkipKind.STOPPED:
                return f"not sent: {self.detail}"


def internal_error(error: BaseException) -> str:
    """An unexpected error, named by its type only (its message may hold anything; the log has it)."""
    return f"internal error ({type(error).__name__}; see the logs)"


def welcome_not_sent(why: str) -> str:
    return f"welcome email not sent: {why}"


def welcome_in_doubt(noun: str, why: str) -> str:
    """`noun`: what the email held, in one word (the credential mode's)."""
    return f"welcome email {_MAY_HAVE_ARRIVED.format(noun)} ({why})"


def username_not_sent(credential: str, why: str) -> str:
    """The welcome email went out (its `credential` works) but the username email did not."""
    return _username(credential, f"was not: {why}") + "; send again to email both"


def username_failed(credential: str, error: BaseException) -> str:
    return _username(credential, f"was not: {internal_error(error)}")


def username_in_doubt(credential: str, why: str) -> str:
    return _username(credential, f"may have been delivered ({why})")


def _username(credential: str, what: str) -> str:
    return f"the welcome email was sent and its {credential} works, but the username email {what}"
