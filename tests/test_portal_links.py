"""Set-password links (CREDENTIAL_MODE=link): a button first, single use, expiry, clear refusals."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask

from bot.context import Context
from bot.portal import auth
from bot.portal.auth import SignInOutcome, set_password_with_link, sign_in
from bot.portal.security import SetupTokenFilter, redact_setup_tokens
from models import AccountStatus, SetupLink, utcnow
from tests.builders import add_person, audit_events
from tests.portal_helpers import (
    GOOD_PASSWORD,
    Browser,
    add_setup_link,
    get_account,
    make_portal_app,
)

FORM = "/portal/setup/password"


def new_password(password: str = GOOD_PASSWORD, confirm: str | None = None) -> dict[str, str]:
    return {"new_password": password, "confirm_password": password if confirm is None else confirm}


def link_row(ctx: Context, account_id: int) -> SetupLink:
    with ctx.sessions() as session:
        [link] = session.query(SetupLink).filter_by(account_id=account_id).all()
        return link


def invited(ctx: Context) -> int:
    return add_person(ctx, password=None, must_change=False, status=AccountStatus.INVITED).account_id


def test_opening_the_link_only_shows_a_button(context: Context, browser: Browser) -> None:
    account_id = invited(context)
    token = add_setup_link(context, account_id)
    page = browser.get(f"/portal/setup/{token}")
    assert page.status_code == 200
    assert (
        "Set your password" in page.text and '<button type="submit" autofocus>Continue</button>' in page.text
    )
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    # Following the link (as a mail scanner does) changes nothing, however often.
    browser.get(f"/portal/setup/{token}")
    assert link_row(context, account_id).used_at is None
    assert audit_events(context.sessions) == []


def test_setting_the_password_through_the_link(context: Context, browser: Browser) -> None:
    account_id = invited(context)
    token = add_setup_link(context, account_id)
    browser.get(f"/portal/setup/{token}")
    response = browser.post(f"/portal/setup/{token}")
    assert response.status_code == 303 and response.headers["Location"] == FORM
    form = browser.get(FORM)
    assert "Choose your password" in form.text and "<code>adoe</code>" in form.text
    assert token not in form.text, "the token is not repeated once exchanged for the session"

    # A bad password is refused with the reason and leaves the link usable.
    response = browser.post(FORM, new_password("short"))
    assert response.status_code == 400
    assert "Use at least 12 characters; this password has 5." in response.text
    response = browser.post(FORM, new_password(confirm="a-different-password-entirely"))
    assert "The two new passwords do not match" in response.text
    assert link_row(context, account_id).used_at is None

    response = browser.post(FORM, new_password())
    assert response.status_code == 303 and response.headers["Location"] == "/portal/"
    home = browser.get("/portal/")
    assert home.status_code == 200 and "Your password is set. You are signed in." in home.text

    assert link_row(context, account_id).used_at is not None
    account = get_account(context, account_id)
    assert account.status == AccountStatus.ACTIVE and not account.must_change_password
    assert sign_in(context, "adoe", GOOD_PASSWORD).outcome is SignInOutcome.OK
    actions = [action for action, *_ in audit_events(context.sessions)]
    assert actions[:3] == ["portal.setup_link_used", "portal.password_changed", "portal.sign_in"]


def test_a_link_works_only_once(context: Context, browser: Browser) -> None:
    account_id = invited(context)
    token = add_setup_link(context, account_id)
    browser.get(f"/portal/setup/{token}")
    browser.post(f"/portal/setup/{token}")
    browser.get(FORM)
    browser.post(FORM, new_password())

    again = Browser(browser.client.application.test_client())
    again.get(f"/portal/setup/{token}")
    response = again.post(f"/portal/setup/{token}")
    assert response.status_code == 410
    assert "This link can no longer be used" in response.text
    assert "Ask for a new link" in response.text


def test_a_second_tab_cannot_use_the_link_after_the_first(context: Context, portal_app: Flask) -> None:
    account_id = invited(context)
    token = add_setup_link(context, account_id)
    first, second = Browser(portal_app.test_client()), Browser(portal_app.test_client())
    for tab in (first, second):
        tab.get(f"/portal/setup/{token}")
        tab.post(f"/portal/setup/{token}")
        tab.get(FORM)
    assert first.post(FORM, new_password()).status_code == 303
    response = second.post(FORM, new_password("another-unrelated-phrase-77"))
    assert response.status_code == 410
    assert sign_in(context, "adoe", GOOD_PASSWORD).outcome is SignInOutcome.OK


@pytest.mark.parametrize("state", ["expired", "used", "revoked", "unknown", "disabled"])
def test_unusable_links_get_a_clear_page(context: Context, browser: Browser, state: str) -> None:
    account_id = invited(context)
    expires_in = timedelta(seconds=-1) if state == "expired" else timedelta(hours=1)
    token = add_setup_link(context, account_id, expires_in=expires_in)
    with context.sessions.begin() as session:
        link = session.query(SetupLink).filter_by(account_id=account_id).one()
        if state == "used":
            link.used_at = utcnow()
        elif state == "revoked":
            link.revoked_at = utcnow()
        elif state == "disabled":
            link.account.status = AccountStatus.DISABLED
    path = "/portal/setup/" + ("x" * 43 if state == "unknown" else token)
    browser.get(path)
    response = browser.post(path)
    assert response.status_code == 410
    assert "Ask for a new link" in response.text
    assert browser.get(FORM).status_code == 410


def test_a_link_that_expires_while_the_form_is_open(context: Context, browser: Browser) -> None:
    account_id = invited(context)
    token = add_setup_link(context, account_id)
    browser.get(f"/portal/setup/{token}")
    browser.post(f"/portal/setup/{token}")
    browser.get(FORM)
    with context.sessions.begin() as session:
        session.query(SetupLink).filter_by(account_id=account_id).one().expires_at = utcnow() - timedelta(
            seconds=1
        )
    assert browser.post(FORM, new_password()).status_code == 410
    assert get_account(context, account_id).password_hash is None


def test_the_link_button_needs_the_csrf_token(context: Context, browser: Browser) -> None:
    token = add_setup_link(context, invited(context))
    browser.get(f"/portal/setup/{token}")
    assert browser.post(f"/portal/setup/{token}", csrf=False).status_code == 400


def test_the_form_without_a_link_in_the_session(browser: Browser) -> None:
    assert browser.get(FORM).status_code == 410


def test_setting_a_password_revokes_other_open_links(context: Context) -> None:
    account_id = invited(context)
    add_setup_link(context, account_id)
    add_setup_link(context, account_id)
    with context.sessions() as session:
        first, second = session.query(SetupLink).filter_by(account_id=account_id).order_by(SetupLink.id).all()
    assert set_password_with_link(context, first.id, GOOD_PASSWORD, GOOD_PASSWORD).ok
    with context.sessions() as session:
        assert session.get_one(SetupLink, second.id).revoked_at is not None


def test_setup_tokens_are_redacted_from_access_logs() -> None:
    token = "Jx3_abcDEF-1234567890abcdefghijklmnopqrstuvw"
    assert redact_setup_tokens(f'"GET /portal/setup/{token} HTTP/1.1" 200') == (
        '"GET /portal/setup/[redacted] HTTP/1.1" 200'
    )
    assert (
        redact_setup_tokens("POST /portal/setup/password HTTP/1.1") == "POST /portal/setup/password HTTP/1.1"
    )
    record = logging.LogRecord(
        "werkzeug", logging.INFO, __file__, 1, '"%s" %s', (f"GET /portal/setup/{token}", 200), None
    )
    SetupTokenFilter().filter(record)
    assert token not in record.getMessage()
    atoms = {"r": f"GET /portal/setup/{token} HTTP/1.1", "s": "200"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(r)s %(s)s", (), None)
    record.args = atoms
    SetupTokenFilter().filter(record)
    assert record.getMessage() == "GET /portal/setup/[redacted] HTTP/1.1 200"


def test_a_failing_set_password_page_keeps_the_token_out_of_the_error_log(
    context: Context, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Flask logs "Exception on /portal/setup/<token> [POST]" with the traceback: redacted too."""
    token = add_setup_link(context, invited(context))
    app = make_portal_app(context)  # not TESTING: errors are logged and answered with the error page
    browser = Browser(app.test_client())

    def broken(_ctx: Context, typed: str) -> int:
        raise RuntimeError(f"database unavailable while opening /portal/setup/{typed}")

    monkeypatch.setattr(auth, "open_setup_link", broken)
    browser.get(f"/portal/setup/{token}")
    with caplog.at_level(logging.INFO):
        response = browser.post(f"/portal/setup/{token}")
        logging.getLogger("elsewhere").warning("visited /portal/setup/%s", token)
    assert response.status_code == 500 and "Something went wrong on our side" in response.text
    assert "Exception on /portal/setup/[redacted] [POST]" in caplog.text
    assert "RuntimeError: database unavailable while opening /portal/setup/[redacted]" in caplog.text
    assert "visited /portal/setup/[redacted]" in caplog.text
    assert token not in caplog.text


def test_an_idle_set_password_form_expires(context: Context, browser: Browser) -> None:
    token = add_setup_link(context, invited(context))
    browser.get(f"/portal/setup/{token}")
    browser.post(f"/portal/setup/{token}")
    with browser.client.session_transaction() as session:
        session["seen"] -= 31 * 60
    assert browser.get(FORM).status_code == 410
    browser.get(f"/portal/setup/{token}")
    assert browser.post(f"/portal/setup/{token}").headers["Location"] == FORM, "the link itself still works"


def test_an_unusable_link_leaves_a_signed_in_session_alone(context: Context, browser: Browser) -> None:
    add_person(
        context, username="other", password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE
    )
    browser.sign_in("other", GOOD_PASSWORD)
    path = "/portal/setup/" + "y" * 43
    browser.get(path)
    response = browser.post(path)
    assert response.status_code == 410 and "Sign out" in response.text
    assert browser.get("/portal/").status_code == 200
