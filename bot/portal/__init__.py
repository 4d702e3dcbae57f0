"""The Self-Service portal: sign-in, password change and set-password links, under `/portal`."""

from __future__ import annotations

import logging
import secrets

from flask import Flask, render_template, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from bot.context import Context
from bot.portal.limits import init_limits
from bot.portal.security import add_security_headers, install_log_filter
from bot.portal.views import EXTENSION_KEY, portal
from bot.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["init_portal", "uses_https"]

MIN_SECRET_KEY_BYTES = 32


def uses_https(settings: Settings) -> bool:
    """True when the portal is served over HTTPS: production, or an https PORTAL_URL."""
    return settings.environment == "production" or settings.portal_url.lower().startswith("https://")


def init_portal(app: Flask, ctx: Context) -> None:
    """Mount the portal on `app`: blueprint at `/portal`, session cookie, security headers, error pages.

    Raises RuntimeError when ENVIRONMENT=production and SECRET_KEY is not set or shorter than 32 bytes.
    """
    settings = ctx.settings
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    if settings.environment == "production" and len(secret.encode()) < MIN_SECRET_KEY_BYTES:
        problem = f"is only {len(secret.encode())} bytes long" if secret else "is not set"
        raise RuntimeError(
            f"SECRET_KEY {problem}: when ENVIRONMENT=production it must be at least {MIN_SECRET_KEY_BYTES} "
            "bytes of random text, as it signs the portal's session cookies. "
            'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    if secret:
        app.secret_key = secret
    else:
        log.warning(
            "SECRET_KEY is not set: using a random key, so portal sign-ins end when the process stops"
        )
        app.secret_key = secrets.token_urlsafe(32)

    https = uses_https(settings)
    app.config.update(
        SESSION_COOKIE_NAME="__Host-credbot_session" if https else "credbot_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
    )
    app.extensions[EXTENSION_KEY] = ctx
    app.register_blueprint(portal)
    init_limits(app, settings)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]  # Flask's documented way to wrap it
    install_log_filter()

    prefix = portal.url_prefix or "/portal"

    @app.after_request
    def _portal_headers(response: Response) -> Response:
        if request.path == prefix or request.path.startswith(prefix + "/"):
            add_security_headers(response, https=https, cacheable=request.endpoint == "portal.static")
        return response

    def _portal_error(error: HTTPException) -> HTTPException | tuple[str, int]:
        if not request.path.startswith(prefix):
            return error
        message = ERROR_MESSAGES.get(error.code or 500, error.description)
        if isinstance(error, RateLimitExceeded):
            message = error.description
        return render_template("portal/error.html", title=error.name, message=message), error.code or 500

    for code in (404, 405, 429, 500):
        app.register_error_handler(code, _portal_error)


ERROR_MESSAGES = {
    404: "There is no page at this address. Check the link you followed, or go to the sign-in page.",
    405: "This page cannot be used that way. Go back and use the page's own buttons.",
    500: "Something went wrong on our side. Try again in a moment; if it keeps happening, tell an "
    "administrator.",
}
"""What the portal's error pages say, instead of Werkzeug's stock text."""
