"""Fixtures for the portal tests: a Flask app with the portal, a browser, set-password links."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bot.context import Context
from bot.portal import init_portal
from bot.portal.views import PROVEN_SECONDS
from models import Account, SetupLink, utcnow

GOOD_PASSWORD = "orbit-lantern-pickle-meadow"


def make_portal_app(ctx: Context, **config: object) -> Flask:
    """A bare Flask app with only the portal mounted (as `credbot.web` does), with `config` set first."""
    app = Flask(__name__)
    app.config.update(config)
    init_portal(app, ctx)
    return app


def add_setup_link(ctx: Context, account_id: int, *, expires_in: timedelta = timedelta(hours=72)) -> str:
    """A set-password link for the account, stored as the sending side does; returns the token."""
    token = secrets.token_urlsafe(32)
    with ctx.sessions.begin() as session:
        session.add(
            SetupLink(
                account_id=account_id,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                expires_at=utcnow() + expires_in,
                sent_at=utcnow(),
            )
        )
    return token


def get_account(ctx: Context, account_id: int) -> Account:
    with ctx.sessions() as session:
        account = session.get(Account, account_id)
        assert account is not None
        session.expunge(account)
        return account


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Browser:
    """A Flask test client that fills in the CSRF token from the last page it fetched."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        response = self.client.get(path, **kwargs)
        if "csrf_token" in response.text:
            self.csrf = csrf_from(response.text)
        return response

    def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kwargs: Any
    ) -> TestResponse:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        response = self.client.post(path, data=form, **kwargs)
        if "csrf_token" in response.text:
            self.csrf = csrf_from(response.text)
        return response

    def sign_in(self, username: str, password: str) -> TestResponse:
        self.get("/portal/login")
        return self.post("/portal/login", {"username": username, "password": password})

    def outside_the_window(self) -> None:
        """As if the sign-in with the temporary password was longer ago than PROVEN_SECONDS: the
        change-password page asks for it again."""
        with self.client.session_transaction() as session:
            session["proven"] = session.get("proven", 0.0) - PROVEN_SECONDS - 1


@pytest.fixture
def portal_app(context: Context) -> Flask:
    app = make_portal_app(context)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def browser(portal_app: Flask) -> Browser:
    return Browser(portal_app.test_client())


def later(minutes: float = 0, hours: float = 0) -> datetime:
    return utcnow() + timedelta(minutes=minutes, hours=hours)
