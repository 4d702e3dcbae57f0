"""Verifying SendGrid's signed Event Webhook: ECDSA P-256 over the timestamp header followed by the raw body.

The public key is the one SendGrid shows under Settings > Mail Settings > Event Webhook > Signature
Verification (base64 DER). Loading it goes through the `sendgrid` package's helper; the signature is
checked with `cryptography` (which that helper uses) on the raw bytes, as received.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
MAX_AGE_SECONDS = 25 * 3600
"""How old a signed POST may be. SendGrid retries a POST that failed for up to 24 hours: refusing older
ones would lose the events of any outage longer than the window for good. Accepting a replayed genuine
POST is harmless: events are stored once each (by `sg_event_id`), and a POST's events can only repeat
what SendGrid already said. An hour's margin covers clocks that disagree."""
MAX_SKEW_SECONDS = 300
"""How far ahead of our clock a signed timestamp may be."""
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)


class WebhookKeyError(ValueError):
    """SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key."""


class EventWebhookVerifier:
    """Checks the signature and timestamp of one Event Webhook POST."""

    def __init__(
        self,
        public_key: str,
        max_age_seconds: float = MAX_AGE_SECONDS,
        max_skew_seconds: float = MAX_SKEW_SECONDS,
    ) -> None:
        try:
            key = EventWebhook().convert_public_key_to_ecdsa(public_key.strip())
        except (ValueError, TypeError) as error:
            raise WebhookKeyError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: copy the Verification Key from SendGrid "
                "(Settings > Mail Settings > Event Webhook > Signature Verification)"
            ) from error
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise WebhookKeyError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key")
        self._key = key
        self.max_age_seconds = max_age_seconds
        self.max_skew_seconds = max_skew_seconds

    def problem(
        self, signature: str | None, timestamp: str | None, body: bytes, now: float | None = None
    ) -> str | None:
        """Why this POST must be refused (a few words, never its content), or None when it is genuine.

        Any header that is not what SendGrid sends is a refusal, never an error: the timestamp must be
        ASCII digits, the signature base64 of a DER signature.
        """
        if not signature or not timestamp:
            return "unsigned (no signature or timestamp header)"
        if not _TIMESTAMP.fullmatch(timestamp):
            return "malformed timestamp"
        try:
            decoded = base64.b64decode(signature.encode("ascii"), validate=True)
        except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
            return "malformed signature"
        try:
            self._key.verify(decoded, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return "bad signature"
        now = time.time() if now is None else now
        age = now - int(timestamp)
        if age > self.max_age_seconds:
            return f"signed more than {self.max_age_seconds / 3600:g} h ago"
        if -age > self.max_skew_seconds:
            return f"signed more than {self.max_skew_seconds:g} s ahead of now"
        return None


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')
TOO_DEEP = object()
"""Stands for an event nested too deep to parse: counted as malformed like any other bad event."""


def event_array(body: bytes) -> list[Any] | None:
    """The POST's events (None: the body is not a JSON array).

    An event nested deeper than Python's parser goes (thousands of levels) must not lose the others:
    the array is then cut into its elements, and each too deep one stands as TOO_DEEP.
    """
    try:
        events = json.loads(body)
    except RecursionError:
        events = _elements(body)
    except ValueError:
        return None
    return events if isinstance(events, list) else None


def _elements(body: bytes) -> list[Any] | None:
    """The top-level array's elements parsed one by one; too deep ones as TOO_DEEP."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    stripped = text.strip()
    if not stripped.startswith("[") or not stripped.endswith("]"):
        return None
    elements: list[Any] = []
    depth, start, deepest = 0, text.index("[") + 1, 0
    for token in _TOKENS.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif mark in "]}":
            depth -= 1
        if (depth == 1 and mark == ",") or (depth == 0 and mark == "]"):
            piece = text[start : token.start()]
            start = token.end()
            if piece.strip():
                elements.append(_element(piece, deepest))
            deepest = 1
        if depth < 0:
            return None
    return elements if depth == 0 else None


def _element(piece: str, deepest: int) -> Any:
    if deepest > MAX_ELEMENT_DEPTH:
        return TOO_DEEP
    try:
        return json.loads(piece)
    except (ValueError, RecursionError):
        return TOO_DEEP


MAX_ELEMENT_DEPTH = 64
"""Deeper than any event; far below what Python's parser handles."""
