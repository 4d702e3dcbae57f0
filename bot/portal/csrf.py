"""CSRF protection for the portal's forms: a random token in the signed session, echoed by each form."""

from __future__ import annotations

import secrets

from flask import request, session
from werkzeug.exceptions import BadRequest

SESSION_KEY = "csrf"
FIELD_NAME = "csrf_token"


class CsrfRefused(BadRequest):
    """A form arrived without the token of this browser's session (forged, or the session ended)."""

    description = (
        "This form could not be accepted because it was out of date or did not come from this site. "
        "Go back, reload the page and try again."
    )


def csrf_token() -> str:
    """The session's CSRF token, created on first use; forms put it in a hidden `csrf_token` field."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Raise CsrfRefused unless the submitted token matches the session's."""
    expected = session.get(SESSION_KEY)
    submitted = request.form.get(FIELD_NAME, "")
    if not expected or not secrets.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfRefused
