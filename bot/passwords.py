"""Temporary passwords and password hashing (argon2id, bcrypt accepted for verification)."""

from __future__ import annotations

import secrets

from passlib.context import CryptContext

# No look-alikes: 0 O o, 1 I l.
TEMP_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"  # noqa: S105

# OWASP's minimum for argon2id: m=19 MiB, t=2, p=1. bcrypt hashes still verify and get rehashed.
password_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated=["bcrypt"],
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__rounds=2,
    argon2__parallelism=1,
)

# Verified against when a user is unknown, so that the answer takes as long as for a known one.
DUMMY_HASH = password_context.hash(secrets.token_urlsafe(16))


def generate_temporary_password(length: int = 16) -> str:
    """A random password of `length` characters (at least 16) from an alphabet without look-alikes."""
    if length < 16:
        raise ValueError("temporary passwords have at least 16 characters")
    return "".join(secrets.choice(TEMP_PASSWORD_ALPHABET) for _ in range(length))


def hash_password(password: str) -> str:
    """The argon2id hash of `password`."""
    return password_context.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when `password` matches `password_hash`; an empty hash costs the same time and fails."""
    if not password_hash:
        password_context.verify(password, DUMMY_HASH)
        return False
    return password_context.verify(password, password_hash)


def needs_rehash(password_hash: str) -> bool:
    """True for hashes made with an older scheme or weaker parameters."""
    return password_context.needs_update(password_hash)
