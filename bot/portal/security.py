"""Security headers for portal responses, and keeping set-password tokens out of every log record."""

from __future__ import annotations

import logging
import re
from typing import Any

from werkzeug.wrappers import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
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
    """Redacts set-password tokens from a log record: its message (arguments included) and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error report
            return True
        redacted = redact_setup_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_setup_tokens(_FORMATTER.formatException(record.exc_info))
        return True


_FORMATTER = logging.Formatter()


def install_log_filter() -> None:
    """Redact set-password tokens from every log record the process makes, whatever its logger or
    handler (Flask's "Exception on /portal/setup/<token>", access logs, tracebacks), once."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts_setup_tokens", False):
        return
    token_filter = SetupTokenFilter()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        token_filter.filter(record)
        return record

    # A mark on the function itself: a second install (say after a module reload) sees it and stops.
    make_record.redacts_setup_tokens = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
