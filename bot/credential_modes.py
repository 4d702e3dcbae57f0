"""The credential modes (CREDENTIAL_MODE): how each one's credential is made, the welcome email's
subject, and how credbot speaks of it. Whatever differs by mode asks the mode's strategy (`of`)
rather than branching on the mode's name; storing, promoting and discarding stay in `bot.credentials`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from bot.credentials import Credential, PasswordSupply, make_link, make_password
from bot.settings import Settings
from models import CredentialMode


class CredentialModeStrategy(ABC):
    """One credential mode: what the welcome email carries."""

    mode: ClassVar[CredentialMode]
    noun: ClassVar[str]
    """What the welcome email holds, in one word ("the password in that email works")."""
    credential: ClassVar[str]
    """What the employee signs in with first ("its temporary password works")."""
    offered: ClassVar[str]
    """What each employee gets, for a confirmation ("a welcome email with a temporary password")."""
    gets: ClassVar[tuple[str, str]]
    """What a send does, for the CLI's confirmation (with `{hours}`, how long the credential lasts)."""
    replaced: ClassVar[str]
    """What stops working for an employee emailed before ("their current password stops working")."""
    only_now: ClassVar[str]
    """Why credentials can only be emailed now, for Slack's confirmation (with `{before}`: how many of
    them were emailed before, or nothing)."""

    @abstractmethod
    def make(self, settings: Settings) -> Credential:
        """A new credential, its plaintext in memory only."""

    @abstractmethod
    def welcome_subject(self, settings: Settings) -> str:
        """The welcome email's subject (with `{company}`)."""

    def supply(self, settings: Settings, ahead: int, most: int) -> PasswordSupply | None:
        """Credentials made ahead of need, for a batch (None: each is made when needed)."""
        return None


class _Password(CredentialModeStrategy):
    mode = CredentialMode.PASSWORD
    noun = "password"
    credential = "temporary password"
    offered = "a temporary password"
    gets = (
        "Each of them gets a new temporary password (valid {hours} h) and, separately, their username.",
        "Passwords are not stored, so they can only be emailed now; sending again later makes a new "
        "password and the older one stops working.",
    )
    replaced = "current password stops"
    only_now = (
        "the temporary password is never stored in plain text and nobody can look it up later. Anyone "
        "already emailed gets a new password{before} that replaces the old one."
    )

    def make(self, settings: Settings) -> Credential:
        return make_password(settings)

    def welcome_subject(self, settings: Settings) -> str:
        return settings.welcome_subject

    def supply(self, settings: Settings, ahead: int, most: int) -> PasswordSupply | None:
        """Argon2 hashes take the hash pool's CPU: they are made ahead, so the pool never waits."""
        return PasswordSupply(settings, ahead=ahead, most=most)


class _Link(CredentialModeStrategy):
    mode = CredentialMode.LINK
    noun = "link"
    credential = "set-password link"
    offered = "a single-use link to set a password"
    gets = (
        "Each of them gets a new single-use link to set their password (valid {hours} h).",
        "Links are not stored, so they can only be emailed now; sending again later makes a new link "
        "and the older one stops working.",
    )
    replaced = "unused older links stop"
    only_now = (
        "the link is never stored in plain text and nobody can look it up later. Anyone already emailed "
        "gets a new link{before}; their earlier unused links stop working."
    )

    def make(self, settings: Settings) -> Credential:
        return make_link(settings)

    def welcome_subject(self, settings: Settings) -> str:
        return settings.welcome_link_subject


_STRATEGIES: dict[CredentialMode, CredentialModeStrategy] = {s.mode: s for s in (_Password(), _Link())}


def of(mode: str) -> CredentialModeStrategy:
    """The strategy of a mode (a batch's `mode`, or CREDENTIAL_MODE); ValueError for an unknown one."""
    return _STRATEGIES[CredentialMode(mode)]
