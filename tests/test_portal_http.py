"""The portal over HTTP: pages, forced change, uniform refusals, CSRF, cookies, headers, audit, email."""

from __future__ import annotations

import email
import io
import logging
import re
import time
from datetime import timedelta
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pydantic import SecretStr
from sqlalchemy import select
from werkzeug.test import TestResponse

from bot import jobs, notices
from bot.context import Context
from bot.directory import import_employees
from bot.mail import MailUnavailable
from bot.passwords import hash_password
from bot.portal.views import REFUSED_MESSAGE
from models import Account, AccountStatus, Employee, utcnow
from tests.builders import TEMP_PASSWORD, add_person, audit_events
from tests.credentials_helpers import body_text, sendgrid_context
from tests.portal_helpers import GOOD_PASSWORD, Browser, get_account, make_portal_app
from tests.standins.sendgrid import SendGridStandIn

CHANGE = "/portal/password"


def change_form(
    current: str = TEMP_PASSWORD, new: str = GOOD_PASSWORD, confirm: str | None = None
) -> dict[str, Any]:
    return {
        "current_password": current,
        "new_password": new,
        "confirm_password": new if confirm is None else confirm,
    }


def outbox_messages(ctx: Context) -> list[email.message.EmailMessage]:
    jobs.join()  # the email is sent by a background job
    directory = Path(ctx.settings.outbox_dir)
    files = sorted(directory.glob("*.eml")) if directory.exists() else []
    return [email.message_from_bytes(path.read_bytes(), policy=default) for path in files]


def without_values(html: str) -> str:
    return re.sub(r'value="[^"]*"', 'value=""', html)


def set_cookie_headers(response: TestResponse) -> list[str]:
    return response.headers.getlist("Set-Cookie")


# --- Sign-in and the forced password change -----------------------------------------------------------


def test_sign_in_page(browser: Browser) -> None:
    response = browser.get("/portal/login")
    assert response.status_code == 200
    assert '<label for="username">Username</label>' in response.text
    assert 'autocomplete="current-password"' in response.text
    assert browser.get("/portal/").headers["Location"] == "/portal/login"


def test_first_sign_in_forces_a_password_change(context: Context, browser: Browser) -> None:
    person = add_person(context)
    response = browser.sign_in("adoe", TEMP_PASSWORD)
    assert response.status_code == 303
    assert response.headers["Location"] == CHANGE

    # Nothing else is reachable until the password is changed.
    assert browser.get("/portal/").headers["Location"] == CHANGE
    assert browser.get("/portal/login").headers["Location"] == "/portal/"
    page = browser.get(CHANGE)
    assert "Choose a new password" in page.text and "do not need to type it again" in page.text
    assert 'name="current_password"' not in page.text, "the session proves the temporary password"

    response = browser.post(CHANGE, change_form())
    assert response.status_code == 303 and response.headers["Location"] == "/portal/"
    home = browser.get("/portal/")
    assert home.status_code == 200
    assert "Your password was changed" in home.text
    assert "Alice Doe" in home.text and "<code>adoe</code>" in home.text and "Employee, Payroll" in home.text

    account = get_account(context, person.account_id)
    assert not account.must_change_password and account.temp_password_expires_at is None
    assert account.status == AccountStatus.ACTIVE

    # Sign out, then the temporary password no longer works and the new one does.
    response = browser.post("/portal/logout")
    assert response.headers["Location"] == "/portal/login"
    assert browser.get("/portal/").headers["Location"] == "/portal/login"
    assert browser.sign_in("adoe", TEMP_PASSWORD).status_code == 401
    response = browser.sign_in("adoe", GOOD_PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/portal/"

    actions = [action for action, *_ in audit_events(context.sessions)]
    assert actions == [
        "portal.sign_in",
        "portal.password_changed",
        "portal.sign_out",
        "portal.sign_in_failed",
        "portal.sign_in",
    ]


def test_password_change_problems_are_shown_and_nothing_changes(context: Context, browser: Browser) -> None:
    person = add_person(context)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.get(CHANGE)
    response = browser.post(CHANGE, change_form(new="short"))
    assert response.status_code == 400
    assert "Use at least 12 characters; this password has 5." in response.text
    response = browser.post(CHANGE, change_form(new="adoe-orbit-lantern"))
    assert "Do not include your username in the password." in response.text
    response = browser.post(CHANGE, change_form(new="Password1234"))
    assert "This password is too easy to guess" in response.text
    response = browser.post(CHANGE, change_form(confirm="something-else-entirely"))
    assert "The two new passwords do not match" in response.text
    browser.outside_the_window()
    assert "Temporary password (from the email)" in browser.get(CHANGE).text
    response = browser.post(CHANGE, change_form(current="wrong"))
    assert "Your current password is not correct" in response.text
    assert get_account(context, person.account_id).must_change_password
    assert browser.get("/portal/").headers["Location"] == CHANGE


def test_expired_temporary_password_page(context: Context, browser: Browser) -> None:
    add_person(context, expires_in=timedelta(minutes=-5))
    response = browser.sign_in("adoe", TEMP_PASSWORD)
    assert response.status_code == 403
    assert "Your temporary password has expired" in response.text
    assert "Ask for new credentials" in response.text and 'href="/portal/recover"' in response.text
    assert browser.get("/portal/").headers["Location"] == "/portal/login"


@pytest.mark.parametrize("case", ["unknown", "wrong", "locked", "disabled"])
def test_refusals_are_identical(context: Context, browser: Browser, case: str) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    add_person(context, username="locked", locked_until=utcnow() + timedelta(minutes=10))
    add_person(context, username="gone", status=AccountStatus.DISABLED)
    username, password = {
        "unknown": ("nobody", GOOD_PASSWORD),
        "wrong": ("adoe", "not-the-password"),
        "locked": ("locked", TEMP_PASSWORD),
        "disabled": ("gone", TEMP_PASSWORD),
    }[case]
    response = browser.sign_in(username, password)
    assert response.status_code == 401
    assert REFUSED_MESSAGE in response.text
    # Apart from the echoed username and the CSRF token, every refusal is the same page.
    reference = Browser(browser.client.application.test_client()).sign_in("nobody", "x")
    assert without_values(response.text) == without_values(reference.text)


def test_lockout_over_http(context: Context, browser: Browser) -> None:
    person = add_person(context)
    for _ in range(5):
        assert browser.sign_in("adoe", "wrong-password-123").status_code == 401
    response = browser.sign_in("adoe", TEMP_PASSWORD)
    assert response.status_code == 401 and REFUSED_MESSAGE in response.text
    assert get_account(context, person.account_id).locked_until is not None
    actions = [action for action, *_ in audit_events(context.sessions)]
    assert actions.count("portal.account_locked") == 1
    assert actions.count("portal.sign_in_failed") == 6


# --- Sessions, CSRF, cookies and headers --------------------------------------------------------------


def test_post_without_or_with_a_wrong_csrf_token_is_refused(context: Context, browser: Browser) -> None:
    add_person(context)
    browser.get("/portal/login")
    response = browser.post("/portal/login", {"username": "adoe", "password": TEMP_PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert "did not come from this site" in response.text
    response = browser.post(
        "/portal/login", {"username": "adoe", "password": TEMP_PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 400
    fresh = Browser(browser.client.application.test_client())
    response = fresh.post("/portal/login", {"username": "adoe", "password": TEMP_PASSWORD, "csrf_token": "x"})
    assert response.status_code == 400, "no session yet: refused"
    assert [action for action, *_ in audit_events(context.sessions)] == [], (
        "refused before any sign-in attempt"
    )


def test_sign_out_needs_the_csrf_token(context: Context, browser: Browser) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser.sign_in("adoe", GOOD_PASSWORD)
    assert browser.post("/portal/logout", csrf=False).status_code == 400
    assert browser.get("/portal/").status_code == 200, "still signed in"


def test_session_is_rotated_at_sign_in(context: Context, browser: Browser) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser.get("/portal/login")
    token_before = browser.csrf
    browser.post("/portal/login", {"username": "adoe", "password": GOOD_PASSWORD})
    home = browser.get("/portal/")
    assert browser.csrf != token_before
    assert home.status_code == 200
    assert browser.post("/portal/logout", {"csrf_token": token_before}).status_code == 400


def test_a_password_change_ends_other_sessions(context: Context, portal_app: Flask) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    first, second = Browser(portal_app.test_client()), Browser(portal_app.test_client())
    first.sign_in("adoe", GOOD_PASSWORD)
    second.sign_in("adoe", GOOD_PASSWORD)
    first.get(CHANGE)
    new = "walrus-harmonica-tundra-5"
    assert first.post(CHANGE, change_form(current=GOOD_PASSWORD, new=new)).status_code == 303
    assert first.get("/portal/").status_code == 200, "the session that changed it stays signed in"
    assert second.get("/portal/").headers["Location"] == "/portal/login"


def test_idle_sessions_end(context: Context, browser: Browser) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser.sign_in("adoe", GOOD_PASSWORD)
    with browser.client.session_transaction() as session:
        session["seen"] -= 31 * 60
    assert browser.get("/portal/").headers["Location"] == "/portal/login"


def test_disabling_an_account_ends_its_session(context: Context, browser: Browser) -> None:
    person = add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser.sign_in("adoe", GOOD_PASSWORD)
    with context.sessions.begin() as session:
        session.get_one(Account, person.account_id).status = AccountStatus.DISABLED
    assert browser.get("/portal/").headers["Location"] == "/portal/login"


def test_cookie_flags_in_development(context: Context, browser: Browser) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    browser.get("/portal/login")
    response = browser.post("/portal/login", {"username": "adoe", "password": GOOD_PASSWORD})
    [cookie] = set_cookie_headers(response)
    assert cookie.startswith("credbot_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie


@pytest.mark.parametrize(
    "update",
    [{"environment": "production"}, {"portal_url": "https://selfservice.example.com/portal"}],
)
def test_cookie_is_secure_in_production_or_behind_https(context: Context, update: dict[str, Any]) -> None:
    update = {**update, "secret_key": SecretStr("k" * 32)}
    ctx = Context(context.settings.model_copy(update=update), context.sessions)
    response = make_portal_app(ctx).test_client().get("/portal/login")
    [cookie] = set_cookie_headers(response)
    assert cookie.startswith("__Host-credbot_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_production_refuses_to_start_without_a_secret_key(context: Context) -> None:
    ctx = Context(
        context.settings.model_copy(update={"environment": "production", "secret_key": None}),
        context.sessions,
    )
    with pytest.raises(RuntimeError, match="SECRET_KEY is not set: when ENVIRONMENT=production"):
        make_portal_app(ctx)


@pytest.mark.parametrize("key", ["short", "x" * 31, "é" * 15])
def test_production_refuses_a_short_secret_key_and_says_how_to_make_one(context: Context, key: str) -> None:
    settings = context.settings.model_copy(update={"environment": "production", "secret_key": SecretStr(key)})
    with pytest.raises(RuntimeError) as refused:
        make_portal_app(Context(settings, context.sessions))
    message = str(refused.value)
    assert f"SECRET_KEY is only {len(key.encode())} bytes long" in message
    assert "at least 32 bytes" in message and "secrets.token_urlsafe(32)" in message
    settings = settings.model_copy(update={"secret_key": SecretStr("x" * 32)})
    assert make_portal_app(Context(settings, context.sessions)).secret_key == "x" * 32


def test_development_without_a_secret_key_uses_a_random_one(
    context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = Context(context.settings.model_copy(update={"secret_key": None}), context.sessions)
    with caplog.at_level(logging.WARNING):
        first, second = make_portal_app(ctx), make_portal_app(ctx)
    assert "SECRET_KEY is not set" in caplog.text
    assert first.secret_key and first.secret_key != second.secret_key
    assert first.test_client().get("/portal/login").status_code == 200


@pytest.mark.parametrize("path", ["/portal/login", "/portal/setup/some-token-value", "/portal/nowhere"])
def test_security_headers(browser: Browser, path: str) -> None:
    response = browser.get(path)
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in headers


def test_portal_error_pages_and_static_files(browser: Browser) -> None:
    missing = browser.get("/portal/nowhere")
    assert missing.status_code == 404 and "Go to sign-in" in missing.text
    assert "There is no page at this address" in missing.text
    assert "requested URL was not found on the server" not in missing.text, "not Werkzeug's stock text"
    css = browser.get("/portal/static/portal.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert css.headers.get("Cache-Control") != "no-store"
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    css.close()


def test_other_routes_of_the_app_are_left_alone(context: Context) -> None:
    app = make_portal_app(context)
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    client = app.test_client()
    response = client.get("/healthz")
    assert response.text == "ok" and "Content-Security-Policy" not in response.headers
    assert client.get("/elsewhere").status_code == 404
    assert "Go to sign-in" not in client.get("/elsewhere").text


# --- The password-changed email -----------------------------------------------------------------------


def test_password_changed_email_lands_in_the_outbox(context: Context, browser: Browser) -> None:
    add_person(context)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.get(CHANGE)
    browser.post(CHANGE, change_form())
    [message] = outbox_messages(context)
    assert message["To"] == "Alice Doe <alice.doe@example.com>"
    assert message["Subject"] == "Your Example Corp Self-Service password was changed"
    assert message["X-Credbot-Category"] == "credbot-password-changed"
    text = body_text(message)
    html = body_text(message, "html")
    for body in (text, html):
        assert "If this wasn't you, contact your administrator" in body.replace("&#39;", "'")
        assert "adoe" in body
        assert GOOD_PASSWORD not in body and TEMP_PASSWORD not in body


def test_a_mail_failure_does_not_undo_the_change(
    context: Context, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = add_person(context)

    class Failing:
        def send(self, email: object) -> str:
            raise MailUnavailable("SendGrid unreachable")

    monkeypatch.setattr(notices, "make_transport", lambda settings: Failing())
    monkeypatch.setitem(notices.send_notice.options, "max_retries", 0)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.get(CHANGE)
    assert browser.post(CHANGE, change_form()).status_code == 303
    jobs.join()
    assert browser.get("/portal/").status_code == 200
    assert not get_account(context, person.account_id).must_change_password
    [(_, _, target, details)] = [e for e in audit_events(context.sessions) if e[0].endswith("notice_failed")]
    assert target == "account:adoe" and "unreachable" in details["error"].lower()


def test_a_password_change_answers_at_once_while_sendgrid_hangs(
    context: Context, sendgrid_standin: SendGridStandIn
) -> None:
    sendgrid_standin.hang_seconds = 6.0
    sendgrid_standin.answer(202, hang=True, times=None)
    ctx = sendgrid_context(context, sendgrid_standin, sendgrid_timeout_seconds=10)
    add_person(ctx)
    app = make_portal_app(ctx)
    app.config["TESTING"] = True
    browser = Browser(app.test_client())
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.get(CHANGE)
    started = time.monotonic()
    assert browser.post(CHANGE, change_form()).status_code == 303
    # The email waits in the queue, not the employee: the page answers well before SendGrid does (the
    # bound is half the hang, not a speed target, so a loaded machine does not fail it).
    assert time.monotonic() - started < sendgrid_standin.hang_seconds / 2
    assert sendgrid_standin.messages == []
    jobs.join()
    [message] = sendgrid_standin.messages  # and it does go out once SendGrid answers
    assert message["categories"] == ["credbot-password-changed"]


def test_no_email_address_is_audited(context: Context, browser: Browser) -> None:
    add_person(context, email=None)
    browser.sign_in("adoe", TEMP_PASSWORD)
    browser.get(CHANGE)
    assert browser.post(CHANGE, change_form()).status_code == 303
    assert outbox_messages(context) == []
    assert (
        "portal.password_change_notice_failed",
        "portal",
        "account:adoe",
        {"error": "no email address"},
    ) in (audit_events(context.sessions))


def test_passwords_never_reach_logs_or_audit(
    context: Context, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    add_person(context)
    with caplog.at_level(logging.DEBUG):
        browser.sign_in("adoe", "wrong-password-987")
        browser.sign_in("adoe", TEMP_PASSWORD)
        browser.get(CHANGE)
        browser.post(CHANGE, change_form(new="Password1234"))
        browser.post(CHANGE, change_form())
    recorded = caplog.text + repr(audit_events(context.sessions))
    for secret in ("wrong-password-987", TEMP_PASSWORD, "Password1234", GOOD_PASSWORD):
        assert secret not in recorded


def test_every_portal_event_records_the_client(context: Context, portal_app: Flask) -> None:
    add_person(context)
    client = portal_app.test_client()
    client.environ_base.update(REMOTE_ADDR="198.51.100.23", HTTP_USER_AGENT="Firefox/140 \x1b[2K")
    browser = Browser(client)
    assert browser.sign_in("adoe", "wrong-password-1").status_code == 401
    assert browser.sign_in("nobody", "wrong-password-1").status_code == 401
    assert browser.sign_in("adoe", TEMP_PASSWORD).status_code == 303
    browser.get(CHANGE)
    assert browser.post(CHANGE, change_form()).status_code == 303
    browser.get("/portal/")
    assert browser.post("/portal/logout").status_code == 303
    events = [row for row in audit_events(context.sessions) if row.action.startswith("portal.")]
    assert [row.action for row in events] == [
        "portal.sign_in_failed",
        "portal.sign_in_failed",
        "portal.sign_in",
        "portal.password_changed",
        "portal.sign_out",
    ]
    for row in events:
        assert row.details["client_address"] == "198.51.100.23", row
        assert row.details["user_agent"] == "Firefox/140 ?[2K", "control characters replaced"


def test_the_home_page_shows_the_account_with_the_manager_from_the_directory(
    context: Context, browser: Browser
) -> None:
    csv = (
        "Employee Number,First name,Last name,Email,Dept,Line manager\n"
        "7,Ada,Lovelace,ada@example.com,R&D,6\n"
        "6,Charles,<b>Babbage</b>,charles@example.com,R&D,\n"
    )
    with context.sessions.begin() as session:
        assert import_employees(session, io.StringIO(csv), "tester").created == 2
        employee = session.scalars(select(Employee).filter_by(employee_number="7")).one()
        assert employee.manager == "6"  # the manager's employee number; the page shows the name
        session.add(
            Account(
                employee=employee,
                username="alovelace",
                status=AccountStatus.ACTIVE,
                password_hash=hash_password(GOOD_PASSWORD),
                password_changed_at=utcnow() - timedelta(days=3),
                last_login_at=utcnow() - timedelta(days=1),
            )
        )
    assert browser.sign_in("alovelace", GOOD_PASSWORD).status_code == 303
    home = browser.get("/portal/").text
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", home, re.S))
    assert facts["Manager"] == "Charles &lt;b&gt;Babbage&lt;/b&gt;"
    assert facts["Department"] == "R&amp;D" and facts["Username"] == "<code>alovelace</code>"
    assert facts["Previous sign-in"].endswith("UTC") and facts["Password changed"].endswith("UTC")
    assert "Sign out everywhere" in home


def test_a_leaver_imported_from_the_hr_export_is_signed_out_and_refused(
    context: Context, browser: Browser
) -> None:
    person = add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    with context.sessions() as session:
        number = session.get_one(Employee, person.employee_id).employee_number
    assert browser.sign_in("adoe", GOOD_PASSWORD).status_code == 303
    assert browser.get("/portal/").status_code == 200
    export = f"Employee ID,First Name,Last Name,Work Email,Status\n{number},Alice,Doe,,Leaver\n"
    with context.sessions.begin() as session:
        assert import_employees(session, io.StringIO(export), "tester").disabled == [(number, "adoe")]
    assert browser.get("/portal/").headers["Location"] == "/portal/login"
    response = browser.sign_in("adoe", GOOD_PASSWORD)
    assert response.status_code == 401 and REFUSED_MESSAGE in response.text
