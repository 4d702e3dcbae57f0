"""Rate limits on the portal's forms, with Flask-Limiter.

Counters live in Redis when REDIS_URL is set (shared by every web process), in memory otherwise (and
while Redis cannot be reached). Behind reverse proxies set TRUSTED_PROXIES, so that the address is the
client's, not the proxy's. Only POSTs count, and three limits apply:

- failures (SIGN_IN_RATE_LIMIT), per client address *and* username together: a refused sign-in, a
  wrong current password, a refused set-password link. A cohort signing in from one office address
  does not share one budget, and someone guessing at one account from one address is stopped; the
  per-account lockout (bot.portal.auth) guards each account whatever the address;
- every password form (PORTAL_ADDRESS_RATE_LIMIT), per address: a generous cap on one source trying
  many usernames;
- recovery requests (RECOVERY_RATE_LIMIT), per address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from flask import Flask, request, session
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response

from bot.settings import Settings

PASSWORD_VIEWS = (
    "portal.login_submit",
    "portal.change_password",
    "portal.setup_open",
    "portal.setup_password",
)
RECOVERY_VIEW = "portal.recover_submit"
TOO_MANY = (
    "There were too many attempts from your network. Wait a few minutes, then try again. "
    "If you forgot your password, use \u201cDidn\u2019t get your email, or it expired?\u201d "
    "on the sign-in page."
)
TOO_MANY_RECOVERY = "There were too many requests from your network. Wait a few minutes, then try again."
KEY_PREFIX_CONFIG = "RATELIMIT_KEY_PREFIX"
"""App config key for the storage key prefix (tests give each app its own)."""


def address_and_user() -> str:
    """The failure limit's key: the client address with whom the attempt is about."""
    if request.endpoint == "portal.login_submit":
        who = "user:" + request.form.get("username", "").strip().lower()[:100]
    elif request.endpoint == "portal.setup_open":
        who = "links"  # nobody named yet: every link guessed from one address counts together
    elif "setup_link" in session:
        who = f"link-id:{session['setup_link']}"
    else:
        who = f"account:{session.get('uid')}"
    return f"{get_remote_address()}|{who}"


def _failed(response: Response) -> bool:
    return response.status_code >= 400


def init_limits(app: Flask, settings: Settings) -> Limiter:
    """Rate-limit the portal's forms of `app` (registered already)."""
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
    failures = limiter.shared_limit(
        settings.sign_in_rate_limit,
        scope="portal-failures",
        key_func=address_and_user,
        methods=["POST"],
        deduct_when=_failed,
        error_message=TOO_MANY,
    )
    per_address = limiter.shared_limit(
        settings.portal_address_rate_limit, scope="portal-address", methods=["POST"], error_message=TOO_MANY
    )
    recovery = limiter.shared_limit(
        settings.recovery_rate_limit,
        scope="portal-recovery",
        methods=["POST"],
        error_message=TOO_MANY_RECOVERY,
    )
    for endpoint in PASSWORD_VIEWS:
        _wrap(app, endpoint, failures, per_address)
    _wrap(app, RECOVERY_VIEW, recovery)
    return limiter


def _wrap(app: Flask, endpoint: str, *limits: Callable[..., Callable[..., ResponseReturnValue]]) -> None:
    # Flask types a view as sync or async; the portal's are sync, and the limits keep the signature.
    view = cast("Callable[..., ResponseReturnValue]", app.view_functions[endpoint])
    for limit in limits:
        view = limit(view)
    app.view_functions[endpoint] = view
