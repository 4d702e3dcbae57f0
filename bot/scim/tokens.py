"""The identity providers' bearer tokens: created once (printed, never stored), kept as a hash, revoked."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.audit import AuditAction, record
from models import ScimToken

TOKEN_PREFIX = "credbot_scim_"  # noqa: S105 (not a secret: marks the tokens, for secret scanners too)
NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
NAME_RULES = (
    "1 to 64 characters: lower-case letters, digits, `.`, `_` and `-`, starting with a letter or a digit"
)
USE_NOTED_EVERY = timedelta(minutes=5)
"""How stale `last_used_at` may be: not written on every request."""


class TokenError(ValueError):
    """A token cannot be created or revoked; the message says why."""


def scim_actor(name: str) -> str:
    """Who acted in the audit log when an identity provider provisioned through the token `name`."""
    return f"scim:{name}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, actor: str) -> str:
    """Create the token `name` and return it: the only time it is seen (only its hash is stored)."""
    name = name.strip().lower()
    if not NAME_RULE.match(name):
        raise TokenError(f"A token name must be {NAME_RULES}.")
    if session.scalar(select(ScimToken.id).where(ScimToken.name == name)) is not None:
        raise TokenError(f"There is a token named {name} already; revoke it first, or pick another name.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ScimToken(name=name, token_hash=_hash(token), created_by=actor))
    record(session, actor, AuditAction.SCIM_TOKEN_CREATED, f"scim_token:{name}")
    return token


def list_tokens(session: Session) -> list[ScimToken]:
    return list(session.scalars(select(ScimToken).order_by(ScimToken.name)))


def revoke_token(session: Session, name: str, actor: str) -> None:
    """Delete the token `name`: requests bearing it are refused from now on (audited)."""
    token = session.scalar(select(ScimToken).where(ScimToken.name == name.strip().lower()))
    if token is None:
        raise TokenError(f"There is no token named {name.strip()}.")
    session.delete(token)
    record(session, actor, AuditAction.SCIM_TOKEN_REVOKED, f"scim_token:{token.name}")


def token_name(session: Session, token: str, now: datetime) -> str | None:
    """The name of the token `token`, None when it is no (longer a) token; notes when it was last used."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    found = session.scalar(select(ScimToken).where(ScimToken.token_hash == _hash(token)))
    if found is None:
        return None
    if found.last_used_at is None or now - found.last_used_at > USE_NOTED_EVERY:
        found.last_used_at = now
    return found.name
