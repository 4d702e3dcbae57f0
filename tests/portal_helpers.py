"""Fixtures for the portal tests: a Flask app with the portal, and employees with accounts."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.context import Context
from bot.passwords import hash_password
from bot.portal import init_portal
from models import Account, AccountStatus, AuditEvent, Employee, Role, SetupLink, utcnow

TEMP_PASSWORD = "TempPassw0rdXyzQ"
GOOD_PASSWORD = "orbit-lantern-pickle-meadow"


def make_portal_app(ctx: Context, **config: object) -> Flask:
    """A bare Flask app with only the portal mounted (as `bot.web` does), with `config` set first."""
    app = Flask(__name__)
    app.config.update(config)
    init_portal(app, ctx)
    return app


@dataclass
class Person:
    account_id: int
    employee_id: int
    username: str
    password: str


def add_person(
    ctx: Context,
    *,
    username: str = "adoe",
    first_name: str = "Alice",
    last_name: str = "Doe",
    email: str | None = "alice.doe@example.com",
    password: str | None = TEMP_PASSWORD,
    must_change: bool = True,
    expires_in: timedelta = timedelta(hours=72),
    status: AccountStatus = AccountStatus.INVITED,
    roles: tuple[str, ...] = ("Employee", "Payroll"),
    **account_fields: object,
) -> Person:
    """An employee with an account whose (temporary) password is `password`."""
    with ctx.sessions.begin() as session:
        employee = Employee(
            employee_number=f"E{secrets.randbelow(10**8)}",
            first_name=first_name,
            last_name=last_name,
            email=email,
        )
        role_rows = []
        for name in roles:
            role = session.scalars(select(Role).where(Role.name == name)).first() or Role(name=name)
            role_rows.append(role)
        account = Account(
            employee=employee,
            username=username,
            status=status,
            password_hash=hash_password(password) if password else None,
            must_change_password=must_change,
            temp_password_expires_at=utcnow() + expires_in if must_change else None,
            roles=role_rows,
            **account_fields,
        )
        session.add(account)
        session.flush()
        return Person(account.id, employee.id, username, password or "")


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


def audit_actions(ctx: Context) -> list[tuple[str, str, str | None, dict]]:
    """(action, actor, target, details) of every audit event, oldest first."""
    with ctx.sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.actor, e.target, e.details) for e in events]


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Browser:
    """A Flask test client that fills in the CSRF token from the last page it fetched."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, path: str, **kwargs: object):
        response = self.client.get(path, **kwargs)
        if "csrf_token" in response.text:
            self.csrf = csrf_from(response.text)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kwargs: object):
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        response = self.client.post(path, data=form, **kwargs)
        if "csrf_token" in response.text:
            self.csrf = csrf_from(response.text)
        return response

    def sign_in(self, username: str, password: str):
        self.get("/portal/login")
        return self.post("/portal/login", {"username": username, "password": password})


@pytest.fixture
def portal_app(context: Context) -> Flask:
    app = make_portal_app(context)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def browser(portal_app: Flask) -> Browser:
    return Browser(portal_app.test_client())


@pytest.fixture
def person_factory(context: Context) -> Callable[..., Person]:
    return lambda **kwargs: add_person(context, **kwargs)


def later(minutes: float = 0, hours: float = 0) -> datetime:
    return utcnow() + timedelta(minutes=minutes, hours=hours)
