"""The Self-Service portal: sign-in, password change and set-password links, under `/portal`."""

from __future__ import annotations

import logging
import secrets

from flask import Blueprint, Flask, redirect, url_for
from werkzeug.wrappers import Response

from bot.context import Context

log = logging.getLogger(__name__)

EXTENSION_KEY = "credbot.portal"

portal = Blueprint("portal", __name__, url_prefix="/portal")


@portal.get("/")
def index() -> Response:
    return redirect(url_for("portal.login"))


@portal.get("/login")
def login() -> str:
    return "Sign in"


def init_portal(app: Flask, ctx: Context) -> None:
    """Register the portal on `app`: blueprint at `/portal`, signed session cookie."""
    settings = ctx.settings
    if settings.secret_key and settings.secret_key.get_secret_value():
        app.secret_key = settings.secret_key.get_secret_value()
    elif settings.environment == "production":
        raise RuntimeError("SECRET_KEY must be set when ENVIRONMENT=production (it signs portal sessions)")
    else:
        log.warning("SECRET_KEY is not set: using a random key; portal sessions end when the process stops")
        app.secret_key = secrets.token_urlsafe(32)
    app.extensions[EXTENSION_KEY] = ctx
    app.register_blueprint(portal)
