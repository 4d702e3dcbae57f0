"""Verifying SendGrid's signed Event Webhook: ECDSA P-256 over the timestamp header followed by the raw body.

The public key is the one SendGrid shows under Settings > Mail Settings > Event Webhook > Signature
Verification (base64 DER). Loading it goes through the `sendgrid` package's helper; the signature is
checked with `cryptography` (which that helper uses) on the raw bytes, as received.
"""

from __future__ import annotations

import base64
import binascii
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
TOLERANCE_SECONDS = 300
"""How far the signed timestamp may be from now: older posts (replays) are refused."""


class WebhookKeyError(ValueError):
    """SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key."""


class EventWebhookVerifier:
    """Checks the signature and timestamp of one Event Webhook POST."""

    def __init__(self, public_key: str, tolerance_seconds: float = TOLERANCE_SECONDS) -> None:
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
        self.tolerance_seconds = tolerance_seconds

    def problem(
        self, signature: str | None, timestamp: str | None, body: bytes, now: float | None = None
    ) -> str | None:
        """Why this POST must be refused (a few words, never its content), or None when it is genuine."""
        if not signature or not timestamp:
            return "unsigned (no signature or timestamp header)"
        if not timestamp.isdigit():
            return "malformed timestamp"
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > self.tolerance_seconds:
            return f"timestamp more than {self.tolerance_seconds:g} s away from now"
        try:
            decoded = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return "malformed signature"
        try:
            self._key.verify(decoded, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "bad signature"
        return None
