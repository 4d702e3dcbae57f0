"""Per-client rate limits on the portal's password forms, with Flask-Limiter.

Counters live in Redis when REDIS_URL is set (shared by every web process), in memory otherwise (and
while Redis cannot be reached).
The limit is per client address (behind reverse proxies set TRUSTED_PROXIES so that the address is
the client's, not the proxy's) and applies to POSTs only: sign-in, password change and set-password.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from flask import Flask, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from bot.settings import Settings

LIMITED_VIEWS = (
    "portal.login_submit",
    "portal.change_password",
    "portal.setup_open",
    "portal.setup_password",
)
TOO_MANY = (
    "There were too many attempts from your network. Wait a few minutes, then try again. "
    "If you forgot your password, ask an administrator to send you new credentials."
)
KEY_PREFIX_CONFIG = "RATELIMIT_KEY_PREFIX"
"""App config key for the storage key prefix (tests give each app its own)."""


def init_limits(app: Flask, settings: Settings) -> Limiter:
    """Rate-limit the portal's password forms of `app` (registered already) per client."""
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        key_prefix=app.config.get(KEY_PREFIX_CONFIG) or f"{settings.redis_namespace}:portal",
        strategy="moving-window",
        in_memory_fallback_enabled=True,  # Redis down: count in this process rather than fail sign-ins
    )
    # Only portal pages are limited; without this, every request (Slack's signed ones too) would pay for
    # Flask-Limiter's lookup of the limits of its endpoint.
    limiter.request_filter(lambda: request.blueprint != "portal")
    limit = limiter.shared_limit(
        settings.sign_in_rate_limit, scope="portal-passwords", methods=["POST"], error_message=TOO_MANY
    )
    for endpoint in LIMITED_VIEWS:
        # Flask types a view as sync or async; the portal's are sync, and the limit keeps the signature.
        view = cast("Callable[..., ResponseReturnValue]", app.view_functions[endpoint])
        app.view_functions[endpoint] = limit(view)
    return limiter
