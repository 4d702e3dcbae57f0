"""Portal sign-in under attack: parallel guessing, rate limits, sessions that end, uniform work."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.cookiejar import CookieJar
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from bot.accounts import disable_accounts, enable_accounts
from bot.context import Context
from bot.passwords import verify_password
from bot.portal import auth
from bot.portal.limits import TOO_MANY
from bot.portal.views import REFUSED_MESSAGE
from models import Account, AccountStatus, utcnow
from tests.builders import TEMP_PASSWORD, add_person, audit_events
from tests.portal_helpers import (
    GOOD_PASSWORD,
    Browser,
    csrf_from,
    get_account,
    make_portal_app,
)

CHANGE = "/portal/password"


def sign_in_reasons(ctx: Context) -> list[str]:
    return [
        d["reason"] for action, _, _, d in audit_events(ctx.sessions) if action == "portal.sign_in_failed"
    ]


def with_settings(ctx: Context, **update: object) -> Context:
    return Context(ctx.settings.model_copy(update=update), ctx.sessions)


def client_at(app: Flask, environ: dict[str, str]) -> FlaskClient:
    client = app.test_client()
    client.environ_base.update(environ)
    return client


# --- 1. Parallel guesses are counted atomically -------------------------------------------------------


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """`app` on a real threaded HTTP server on loopback."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


class HttpClient:
    """A browser over real HTTP: its own cookie jar, CSRF token from the sign-in page."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with self.opener.open(f"{base}/portal/login") as page:
            self.csrf = csrf_from(page.read().decode())

    def sign_in(self, username: str, password: str) -> tuple[int, str]:
        form = {"username": username, "password": password, "csrf_token": self.csrf}
        try:
            with self.opener.open(
                f"{self.base}/portal/login", urllib.parse.urlencode(form).encode()
            ) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


def test_parallel_wrong_passwords_are_checked_no_more_than_the_threshold(context: Context) -> None:
    ctx = with_settings(context, sign_in_rate_limit="1000/minute")
    person = add_person(ctx)
    parallel = 40
    with serving(make_portal_app(ctx)) as base:
        clients = [HttpClient(base) for _ in range(parallel)]
        start = threading.Barrier(parallel)
        answers: list[int] = []

        def guess(client: HttpClient) -> None:
            start.wait()
            answers.append(client.sign_in("adoe", "wrong-password-123")[0])

        threads = [threading.Thread(target=guess, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert answers == [401] * parallel
        reasons = sign_in_reasons(ctx)
        assert reasons.count("wrong_password") == ctx.settings.lockout_threshold
        assert reasons.count("locked") == parallel - ctx.settings.lockout_threshold

        status, page = HttpClient(base).sign_in("adoe", TEMP_PASSWORD)
        assert status == 401 and REFUSED_MESSAGE in page, "the right password does not open a locked account"
    account = get_account(ctx, person.account_id)
    assert account.failed_login_count == ctx.settings.lockout_threshold
    assert account.locked_until is not None and account.locked_until > utcnow()


# --- 2. Per-client rate limits ------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def limited(request: pytest.FixtureRequest, context: Context) -> tuple[Context, dict[str, Any]]:
    """A context allowing 3 password POSTs per client per minute, counted in memory or in Redis."""
    if request.param == "memory":
        return with_settings(context, sign_in_rate_limit="3/minute"), {}
    url = request.getfixturevalue("redis_server_url")
    config = {"RATELIMIT_KEY_PREFIX": request.getfixturevalue("redis_namespace")}
    return with_settings(context, sign_in_rate_limit="3/minute", redis_url=url), config


def test_failures_are_limited_per_address_and_username_with_one_uniform_answer(
    limited: tuple[Context, dict[str, Any]],
) -> None:
    ctx, config = limited
    add_person(ctx, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    app = make_portal_app(ctx, **config)
    attacker = Browser(app.test_client())
    for _ in range(3):
        assert attacker.sign_in("adoe", "wrong-password-123").status_code == 401
    refused = attacker.sign_in("ADoe ", GOOD_PASSWORD)
    assert refused.status_code == 429
    assert TOO_MANY in refused.text
    assert len(sign_in_reasons(ctx)) == 3, "refused before any password was checked"
    assert attacker.sign_in("nobody", "wrong-password-123").status_code == 401, "another username"

    # Another client is not limited; with Redis, even on another web process (another app).
    other_app = make_portal_app(ctx, **config) if config else app
    elsewhere = Browser(client_at(other_app, {"REMOTE_ADDR": "192.0.2.7"}))
    assert elsewhere.sign_in("adoe", GOOD_PASSWORD).status_code == 303
    if config:
        same_client_elsewhere = Browser(other_app.test_client())
        assert same_client_elsewhere.sign_in("adoe", GOOD_PASSWORD).status_code == 429


def test_successes_do_not_count_as_failures_but_one_address_has_a_cap(context: Context) -> None:
    ctx = with_settings(context, sign_in_rate_limit="1/minute", portal_address_rate_limit="4/minute")
    add_person(ctx, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    app = make_portal_app(ctx)
    assert [Browser(app.test_client()).sign_in("adoe", GOOD_PASSWORD).status_code for _ in range(4)] == [
        303
    ] * 4
    refused = Browser(app.test_client()).sign_in("adoe", GOOD_PASSWORD)
    assert refused.status_code == 429 and TOO_MANY in refused.text


def test_set_password_links_are_rate_limited(context: Context) -> None:
    app = make_portal_app(with_settings(context, sign_in_rate_limit="2/minute"))
    browser = Browser(app.test_client())
    browser.get("/portal/setup/guess-one-xxxxxxxx")
    assert browser.post("/portal/setup/guess-one-xxxxxxxx").status_code == 410
    assert browser.post("/portal/setup/guess-two-xxxxxxxx").status_code == 410
    assert browser.post("/portal/setup/guess-three-xxxxxx").status_code == 429
    assert browser.get("/portal/setup/guess-four-xxxxxxx").status_code == 200, "GETs are not limited"


def test_behind_a_trusted_proxy_the_forwarded_client_is_limited(context: Context) -> None:
    app = make_portal_app(with_settings(context, sign_in_rate_limit="1/minute", trusted_proxies=1))
    first = Browser(client_at(app, {"HTTP_X_FORWARDED_FOR": "198.51.100.1"}))
    second = Browser(client_at(app, {"HTTP_X_FORWARDED_FOR": "198.51.100.2"}))
    assert first.sign_in("nobody", "x").status_code == 401
    assert first.sign_in("nobody", "x").status_code == 429
    assert second.sign_in("nobody", "x").status_code == 401


# --- 3. Sessions end everywhere -----------------------------------------------------------------------


def copy_of_cookie(browser: Browser, app: Flask) -> Browser:
    """Another browser holding a copy of `browser`'s session cookie (as a thief would)."""
    cookie = browser.client.get_cookie("credbot_session")
    assert cookie is not None
    thief = Browser(app.test_client())
    thief.client.set_cookie("credbot_session", cookie.value)
    return thief


def test_a_captured_cookie_stops_working_at_sign_out(context: Context, portal_app: Flask) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser = Browser(portal_app.test_client())
    browser.sign_in("adoe", GOOD_PASSWORD)
    browser.get("/portal/")
    thief = copy_of_cookie(browser, portal_app)
    assert thief.get("/portal/").status_code == 200
    assert browser.post("/portal/logout").status_code == 303
    assert thief.get("/portal/").headers["Location"] == "/portal/login"
    assert ("portal.sign_out", "adoe") in [
        (action, actor) for action, actor, *_ in audit_events(context.sessions)
    ]


def test_a_lock_ends_the_sessions_even_after_it_is_over(context: Context, portal_app: Flask) -> None:
    person = add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser = Browser(portal_app.test_client())
    browser.sign_in("adoe", GOOD_PASSWORD)
    thief = copy_of_cookie(browser, portal_app)
    for _ in range(context.settings.lockout_threshold):
        auth.sign_in(context, "adoe", "wrong-password-123")
    assert browser.get("/portal/").headers["Location"] == "/portal/login"
    with context.sessions.begin() as session:  # the wait is over
        session.get_one(Account, person.account_id).locked_until = utcnow() - timedelta(seconds=1)
    assert thief.get("/portal/").headers["Location"] == "/portal/login"


def test_a_disable_ends_the_sessions_even_after_it_is_enabled_again(
    context: Context, portal_app: Flask
) -> None:
    person = add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser = Browser(portal_app.test_client())
    browser.sign_in("adoe", GOOD_PASSWORD)
    thief = copy_of_cookie(browser, portal_app)
    assert thief.get("/portal/").status_code == 200
    with context.sessions.begin() as session:
        assert disable_accounts(session, "cli:admin", [person.employee_id]).changed
    with context.sessions.begin() as session:
        assert enable_accounts(session, "cli:admin", [person.employee_id]).changed
    assert thief.get("/portal/").headers["Location"] == "/portal/login"
    assert browser.get("/portal/").headers["Location"] == "/portal/login"


# --- 4. The same work for known and unknown usernames -------------------------------------------------


@pytest.mark.parametrize("case", ["wrong password", "locked", "disabled"])
def test_known_and_unknown_usernames_cost_the_same_queries_and_hashes(
    context: Context, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    add_person(context, username="adoe")
    add_person(context, username="locked", locked_until=utcnow() + timedelta(minutes=5))
    add_person(context, username="gone", status=AccountStatus.DISABLED)
    engine = context.sessions.kw["bind"]
    verified: list[bool] = []

    def counting_verify(password: str, password_hash: str | None) -> bool:
        verified.append(True)
        return verify_password(password, password_hash)

    monkeypatch.setattr(auth, "verify_password", counting_verify)

    def work(username: str) -> tuple[list[str], int]:
        statements: list[str] = []

        def log(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            statements.append(re.sub(r"\s+", " ", statement))

        verified.clear()
        event.listen(engine, "before_cursor_execute", log)
        try:
            auth.sign_in(context, username, "wrong-password-123")
        finally:
            event.remove(engine, "before_cursor_execute", log)
        return statements, len(verified)

    username = {"wrong password": "adoe", "locked": "locked", "disabled": "gone"}[case]
    auth.sign_in(context, "warm-up", "x")
    known, unknown = work(username), work("nobody")
    assert known == unknown
    assert known[1] == 2


# --- 12 and 13. The change-password page says what happened and marks the field in error ---------------


def invalid_fields(html: str) -> set[str]:
    return set(re.findall(r'name="(\w+)"[^>]*aria-invalid="true"', html))


def test_the_field_in_error_is_marked(context: Context, browser: Browser) -> None:
    add_person(context)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.outside_the_window()
    browser.get(CHANGE)
    cases = {
        "current_password": ("not-the-password", GOOD_PASSWORD, GOOD_PASSWORD),
        "new_password": (TEMP_PASSWORD, "password123", "password123"),
        "confirm_password": (TEMP_PASSWORD, GOOD_PASSWORD, GOOD_PASSWORD + "x"),
    }
    for field, (current, new, confirm) in cases.items():
        form = {"current_password": current, "new_password": new, "confirm_password": confirm}
        response = browser.post(CHANGE, form)
        assert response.status_code == 400
        assert invalid_fields(response.text) == {field}


def test_locking_yourself_out_on_the_change_page_says_so(context: Context, browser: Browser) -> None:
    person = add_person(context)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.outside_the_window()
    browser.get(CHANGE)
    wrong = {"current_password": "not-it", "new_password": GOOD_PASSWORD, "confirm_password": GOOD_PASSWORD}
    for _ in range(context.settings.lockout_threshold - 1):
        assert "current password is not correct" in browser.post(CHANGE, wrong).text
    last = browser.post(CHANGE, wrong)
    assert last.status_code == 303 and last.headers["Location"] == "/portal/login"
    page = browser.get("/portal/login")
    assert "too many wrong passwords your account is locked" in page.text
    assert "wait a minute, then sign in again" in page.text
    assert browser.get("/portal/").headers["Location"] == "/portal/login", "signed out"
    assert get_account(context, person.account_id).locked_until is not None


def test_an_unreachable_redis_falls_back_to_counting_in_memory(context: Context) -> None:
    ctx = with_settings(context, sign_in_rate_limit="2/minute", redis_url="redis://127.0.0.1:1/0")
    browser = Browser(
        make_portal_app(ctx, RATELIMIT_KEY_PREFIX=f"credbot-test-{uuid.uuid4().hex}").test_client()
    )
    assert [browser.sign_in("nobody", "x").status_code for _ in range(3)] == [401, 401, 429]


def test_the_right_current_password_at_the_threshold_keeps_the_session(
    context: Context, browser: Browser
) -> None:
    add_person(context)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.outside_the_window()
    browser.get(CHANGE)
    wrong = {"current_password": "not-it", "new_password": GOOD_PASSWORD, "confirm_password": GOOD_PASSWORD}
    for _ in range(context.settings.lockout_threshold - 1):
        browser.post(CHANGE, wrong)
    mismatch = {**wrong, "current_password": TEMP_PASSWORD, "confirm_password": "something-else-entirely"}
    assert browser.post(CHANGE, mismatch).status_code == 400
    assert browser.get(CHANGE).status_code == 200, "still signed in"
