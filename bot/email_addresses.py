"""Email addresses checked and normalised with email-validator (without DNS), fast for the usual ones.

Most of an import's CPU went to email-validator, which checks each address's domain from scratch (about
30 µs an address, and an HR export holds two per row). An ordinary address (a plain ASCII dot-atom before
the `@`) normalises to itself with its domain normalised, so its domain is checked once per domain
(cached) and its local part with a pattern; anything else (quoted, non-ASCII, long) goes through
email-validator whole, as before.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

_PLAIN_LOCAL_PART = re.compile(r"[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*")
_MAX_LOCAL_PART = 64
_MAX_ADDRESS = 254


def normalised_address(address: str) -> str:
    """`address` as email-validator normalises it; EmailNotValidError (with its message) if it is not one."""
    local, at, domain = address.rpartition("@")
    if (
        at
        and len(local) <= _MAX_LOCAL_PART
        and len(address) <= _MAX_ADDRESS
        and _PLAIN_LOCAL_PART.fullmatch(local)
        and (normalised := _normalised_domain(domain)) is not None
    ):
        return f"{local}@{normalised}"
    return validate_email(address, check_deliverability=False).normalized


@lru_cache(maxsize=4096)
def _normalised_domain(domain: str) -> str | None:
    """The domain as email-validator normalises it; None when it refuses it (the whole address is then
    checked again, for the error's message)."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None
