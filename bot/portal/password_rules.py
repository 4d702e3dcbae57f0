"""Password rules after NIST SP 800-63B and OWASP ASVS: length, no personal data, not guessable.

There are no composition rules (no "one digit, one symbol"); instead a password must be long enough and
must not be easy to guess, as estimated offline by zxcvbn.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from zxcvbn import zxcvbn

from bot.directory import fold_accents

MAX_LENGTH = 128
MIN_SCORE = 3
"""zxcvbn score (0-4) a password needs; 3 = "safely unguessable: moderate protection from offline attacks"."""
MIN_NAME_PART = 3
"""Name parts shorter than this (e.g. "Li", "Al") are too common inside words to be refused."""


def normalize_password(password: str) -> str:
    """The password as stored and compared: Unicode NFKC, as NIST SP 800-63B recommends."""
    return unicodedata.normalize("NFKC", password)


def password_problems(
    password: str,
    *,
    min_length: int,
    username: str,
    first_name: str = "",
    last_name: str = "",
    current_password: str | None = None,
    extra_words: Iterable[str] = (),
) -> list[str]:
    """What is wrong with `password`, one sentence each saying what to fix; empty when it is acceptable.

    `current_password` (the temporary or current password) must not be reused. `extra_words` (e.g. the
    company name) only make the guessability estimate stricter.
    """
    password = normalize_password(password)
    if not password:
        return ["Enter a new password."]
    length = len(password)
    if length < min_length:
        return [f"Use at least {min_length} characters; this password has {length}."]
    if length > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH} characters; this password has {length}."]

    problems = []
    folded = _fold(password)
    if current_password is not None and password == normalize_password(current_password):
        problems.append("Choose a password different from your current (temporary) password.")
    if username and _fold(username) in folded:
        problems.append("Do not include your username in the password.")
    for part in _name_parts(first_name, last_name):
        if _fold(part) in folded:
            problems.append(f'Do not include your name ("{part}") in the password.')
    if not problems:
        problems.extend(_guessability_problems(password, [username, first_name, last_name, *extra_words]))
    return problems


def _fold(text: str) -> str:
    """`text` with accents folded and case ignored, as usernames are made: "Ñúñez" -> "nunez"."""
    return fold_accents(text).casefold()


def _name_parts(first_name: str, last_name: str) -> list[str]:
    parts = re.split(r"[\s\-'.]+", f"{first_name} {last_name}")
    return list(dict.fromkeys(part for part in parts if len(part) >= MIN_NAME_PART))


def _guessability_problems(password: str, user_inputs: list[str]) -> list[str]:
    inputs = []
    for phrase in filter(None, user_inputs):
        for variant in dict.fromkeys([phrase, fold_accents(phrase)]):
            inputs += [variant, variant.replace(" ", ""), *variant.split()]
    result = zxcvbn(password, user_inputs=inputs, max_length=MAX_LENGTH)
    if result["score"] >= MIN_SCORE:
        return []
    warning = result["feedback"].get("warning") or ""
    message = "This password is too easy to guess"
    message += f" ({warning.rstrip('.')})." if warning else "."
    return [
        message
        + " Use a longer passphrase of several unrelated words; adding digits or symbols helps little."
    ]
