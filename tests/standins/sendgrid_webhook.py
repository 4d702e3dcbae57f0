"""SendGrid's signed Event Webhook, as a test client: events signed with a real ECDSA P-256 key and posted.

SendGrid signs `timestamp + body` with ECDSA (P-256, SHA-256), sends the base64 DER signature in
X-Twilio-Email-Event-Webhook-Signature and the timestamp in X-Twilio-Email-Event-Webhook-Timestamp, and
shows the public key (base64 DER SubjectPublicKeyInfo) in its settings for the receiver to verify with.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


class EventWebhookSender:
    """Signs and posts Event Webhook batches to `url` with a P-256 key of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it (for SENDGRID_WEBHOOK_PUBLIC_KEY)."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        signature = (key or self.key).sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def post(
        self,
        events: list[dict[str, Any]] | None = None,
        *,
        body: bytes | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        signed: bool = True,
        key: ec.EllipticCurvePrivateKey | None = None,
        tamper: bool = False,
    ) -> Answer:
        """POST `events` (or a raw `body`), signed unless `signed=False`; `tamper` changes the body after
        signing; `key` signs with another key."""
        raw = body if body is not None else json.dumps(events or []).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": "application/json"}
        if signed:
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = signature or self.sign(raw, stamp, key)
        if tamper:
            raw = raw.replace(b"delivered", b"bounce", 1) if b"delivered" in raw else raw + b" "
        request = urllib.request.Request(self.url, data=raw, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback only)
                return Answer(answer.status, answer.read().decode())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode())
