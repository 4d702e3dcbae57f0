"""Who is on the other end of a portal request: the client's address and user agent, for the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_USER_AGENT = 300
"""Longer user agents are cut: the audit keeps enough to tell browsers apart, not whatever was sent."""


@dataclass(frozen=True)
class Client:
    """The client of a portal request. `address` is the one TRUSTED_PROXIES makes the client's."""

    address: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, address: str | None, user_agent: str | None) -> Client:
        """A client from what the request carried, non-printable characters replaced and long text cut."""
        return cls(_printable(address, 64), _printable(user_agent, MAX_USER_AGENT))

    def audit(self) -> dict[str, Any]:
        """The audit details naming the client (none for a service called outside a request)."""
        if self == NO_CLIENT:
            return {}
        return {"client_address": self.address, "user_agent": self.user_agent}


NO_CLIENT = Client()
"""A service called outside a web request (tests, the CLI)."""


def _printable(text: str | None, limit: int) -> str | None:
    if not text:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
