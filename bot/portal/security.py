"""Security headers for portal responses, and keeping set-password tokens out of access logs."""

from __future__ import annotations

import logging
import re

from werkzeug.wrappers import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SETUP_TOKEN = re.compile(r"(/setup/)(?!password\b)[A-Za-z0-9_\-]{8,}")


def add_security_headers(response: Response, *, https: bool, cacheable: bool = False) -> Response:
    """CSP, frame denial, no sniffing, no referrer (set-password URLs carry a token), no caching."""
    headers = response.headers
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    if not cacheable:
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    return response


def redact_setup_tokens(text: str) -> str:
    """`text` with set-password tokens in `/setup/<token>` paths replaced by `[redacted]`."""
    return _SETUP_TOKEN.sub(r"\1[redacted]", text)


class SetupTokenFilter(logging.Filter):
    """Redacts set-password tokens from log records (werkzeug's and gunicorn's access logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_setup_tokens(record.msg)
        if isinstance(record.args, dict):  # gunicorn's atoms (a dict subclass): change in place
            for key, value in list(record.args.items()):
                record.args[key] = _redact(value)
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact(value) for value in record.args)
        return True


def _redact(value: object) -> object:
    return redact_setup_tokens(value) if isinstance(value, str) else value


ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")


def install_log_filter() -> None:
    """Add the token filter to the access loggers (once)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, SetupTokenFilter) for existing in logger.filters):
            logger.addFilter(SetupTokenFilter())
