"""End to end in headless Chromium: credentials to the outbox, first sign-in, forced change, link mode.

Needs Debian's `chromium` (/usr/bin/chromium); Playwright's own browser download is not used. Without it the
tests skip, unless CREDBOT_REQUIRE_BROWSER is set (CI), in which case they fail. Screenshots of every page
go to `test-artifacts/browser/`.
"""

from __future__ import annotations

import email
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright
from werkzeug.serving import make_server

from bot import jobs
from bot.context import Context
from bot.settings import PROJECT_ROOT, Settings
from bot.slack_app import make_web_client
from handlers import ids
from handlers.recovery import post_cards
from models import Account, AccountStatus, BatchSource, DeliveryStatus, utcnow
from tests.builders import add_person, present
from tests.credentials_helpers import body_text, send_credentials
from tests.portal_helpers import make_portal_app
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.slack import SlackStandIn

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
NEW_PASSWORD = "marmalade-glacier-trombone"
LINK_PASSWORD = "velvet-cactus-lighthouse-9"
AUDIT_CHANNEL = "CAUDIT001"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)"
        if os.environ.get("CREDBOT_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class LiveServer:
    """The portal served by werkzeug on 127.0.0.1 (any free port), in a thread."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self.server = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        assert self.app is not None
        return self.app(environ, start_response)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live(context: Context) -> Iterator[tuple[Context, LiveServer]]:
    """A context whose PORTAL_URL is the live server, and the server running the portal with it."""
    server = LiveServer()
    settings = context.settings.model_copy(update={"portal_url": server.url + "/portal"})
    ctx = Context(settings=settings, sessions=context.sessions)
    server.app = make_portal_app(ctx)
    yield ctx, server
    server.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Page errors: resources the CSP blocked or that failed to load, and any Referer sent."""
    return []


@pytest.fixture
def page(chromium: Browser, console_errors: list[str]) -> Iterator[Page]:
    browser_context = chromium.new_context(viewport={"width": 1000, "height": 760})
    page = browser_context.new_page()
    page.set_default_timeout(15_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            console_errors.append(message.text)

    def on_response(response: Response) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            console_errors.append(f"{response.status} for {response.url}")
        referer = response.request.headers.get("referer")
        if referer:  # Referrer-Policy: no-referrer, so set-password tokens never leak in a Referer
            console_errors.append(f"Referer {referer} sent to {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: console_errors.append(str(error)))
    yield page
    browser_context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def read_outbox(ctx: Context) -> dict[str, list[EmailMessage]]:
    """Outbox messages by category (X-Credbot-Category), oldest first."""
    messages: dict[str, list[EmailMessage]] = {}
    for path in sorted(Path(ctx.settings.outbox_dir).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        messages.setdefault(message["X-Credbot-Category"], []).append(message)
    return messages


def text_of(message: EmailMessage) -> str:
    return body_text(message)


def send_to(ctx: Context, employee_id: int) -> dict[str, EmailMessage]:
    """Send credentials through the credentials service; the welcome and username emails it wrote."""
    before = {category: len(found) for category, found in read_outbox(ctx).items()}
    summary = send_credentials(ctx, [employee_id], actor="e2e-test", source=BatchSource.CLI)
    assert [outcome.status for outcome in summary.sent] == [DeliveryStatus.SENT], summary
    after = read_outbox(ctx)
    return {
        category: after[category][before.get(category, 0)]
        for category in ("credbot-welcome", "credbot-username")
    }


def username_from(message: EmailMessage) -> str:
    match = re.search(r"username is:\s+(\S+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)


def sign_in(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button:has-text('Sign in')")


def check_styled(page: Page, console_errors: list[str]) -> None:
    """The stylesheet loaded under the CSP (no console errors, the button is styled)."""
    radius = page.eval_on_selector("main button, main .button", "e => getComputedStyle(e).borderRadius")
    assert radius == "4px"
    assert console_errors == []


def test_password_mode_first_sign_in_forced_change_and_new_password(
    live: tuple[Context, LiveServer], page: Page, console_errors: list[str]
) -> None:
    ctx, server = live
    person = add_person(ctx, password=None, must_change=False, status=AccountStatus.PENDING)
    mail = send_to(ctx, person.employee_id)
    welcome = text_of(mail["credbot-welcome"])
    temporary = present(re.search(r"temporary password:\s+(\S+)", welcome)).group(1)
    sign_in_url = present(re.search(r"(http://\S+/portal/login)", welcome)).group(1)
    username = username_from(mail["credbot-username"])
    assert username == "adoe" and sign_in_url == server.url + "/portal/login"

    page.goto(sign_in_url)
    check_styled(page, console_errors)
    shot(page, "password-01-sign-in")
    sign_in(page, username, "not-the-password-1")
    assert "Incorrect username or password" in page.inner_text("main")
    shot(page, "password-02-sign-in-refused")

    sign_in(page, username, temporary)
    page.wait_for_url("**/portal/password")
    assert "Choose a new password" in page.inner_text("h1")
    shot(page, "password-03-forced-change")
    page.goto(server.url + "/portal/")
    assert page.url.endswith("/portal/password"), "nothing else is reachable before the change"

    assert page.locator("#current_password").count() == 0, "not asked again right after signing in"
    page.fill("#new_password", "Password1234")
    page.fill("#confirm_password", "Password1234")
    page.click("button:has-text('Save new password')")
    assert "too easy to guess" in page.inner_text("#problems")
    shot(page, "password-04-rules")

    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("button:has-text('Save new password')")
    page.wait_for_url("**/portal/")
    main = page.inner_text("main")
    assert (
        "Your password was changed" in main and "Alice Doe" in main and "adoe" in main and "Employee" in main
    )
    shot(page, "password-05-home")

    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/portal/login")
    assert "You have signed out." in page.inner_text("main")
    shot(page, "password-06-signed-out")

    sign_in(page, username, temporary)
    assert "Incorrect username or password" in page.inner_text("main"), "the temporary password is spent"
    sign_in(page, username, NEW_PASSWORD)
    page.wait_for_url("**/portal/")
    assert "Hello, Alice" in page.inner_text("h1")
    check_styled(page, console_errors)

    [notice] = read_outbox(ctx)["credbot-password-changed"]
    assert notice["To"].addresses[0].addr_spec == "alice.doe@example.com"
    assert "If this wasn't you, contact your administrator" in text_of(notice)


def test_link_mode_set_password_once_then_sign_in(
    live: tuple[Context, LiveServer], page: Page, console_errors: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")
    ctx, server = live
    ctx = Context(ctx.settings.model_copy(update={"credential_mode": "link"}), ctx.sessions)
    server.app = make_portal_app(ctx)
    person = add_person(
        ctx,
        username="bsmith",
        first_name="Bob",
        last_name="Smith",
        email="bob.smith@example.com",
        password=None,
        must_change=False,
        status=AccountStatus.PENDING,
    )
    mail = send_to(ctx, person.employee_id)
    welcome = text_of(mail["credbot-welcome"])
    setup_url = present(re.search(r"(http://\S+/portal/setup/\S+)", welcome)).group(1)
    assert "temporary password:" not in welcome
    username = username_from(mail["credbot-username"])
    assert username == "bsmith"

    page.goto(setup_url)
    check_styled(page, console_errors)
    shot(page, "link-01-button")
    page.goto(setup_url)  # following the link again (as a mail scanner does) does not use it up
    page.click("button:has-text('Continue')")
    page.wait_for_url("**/portal/setup/password")
    assert "Your username is bsmith" in page.inner_text("main")
    shot(page, "link-02-choose-password")

    page.fill("#new_password", "bob-smith-password")
    page.fill("#confirm_password", "bob-smith-password")
    page.click("button:has-text('Set password')")
    assert 'Do not include your name ("Smith")' in page.inner_text("#problems")
    shot(page, "link-03-rules")

    page.fill("#new_password", LINK_PASSWORD)
    page.fill("#confirm_password", LINK_PASSWORD)
    page.click("button:has-text('Set password')")
    page.wait_for_url("**/portal/")
    assert "Your password is set" in page.inner_text("main")
    shot(page, "link-04-home")

    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/portal/login")
    sign_in(page, username, LINK_PASSWORD)
    page.wait_for_url("**/portal/")
    assert "Hello, Bob" in page.inner_text("h1")

    page.goto(setup_url)
    page.click("button:has-text('Continue')")
    assert "This link can no longer be used" in page.inner_text("h1")
    assert "Ask for a new link" in page.inner_text("main")
    shot(page, "link-05-used")
    assert console_errors == []
    token = setup_url.rsplit("/", 1)[1]
    assert "/portal/setup/[redacted]" in caplog.text and token not in caplog.text, (
        "the access log hides tokens"
    )


def test_expired_temporary_password_page(
    live: tuple[Context, LiveServer], page: Page, console_errors: list[str]
) -> None:
    ctx, server = live
    add_person(ctx, expires_in=timedelta(minutes=-1))
    page.goto(server.url + "/portal/login")
    sign_in(page, "adoe", "TempPassw0rdXyzQ")
    assert "Your temporary password has expired" in page.inner_text("h1")
    shot(page, "expired")


# --- Recovery, the no-retype change, the rules, phones (issue 22) -------------------------------------


@pytest.fixture
def slack_live(settings: Settings, slack_standin: SlackStandIn) -> Iterator[RunningApp]:
    """The whole web app (Slack and the portal) on loopback, with the audit channel in the stand-in."""
    slack_standin.channels.add(AUDIT_CHANNEL)
    yield from serve_app(
        slack_settings(settings, slack_standin, audit_channel_id=AUDIT_CHANNEL), slack_standin
    )


def test_recovery_of_an_expired_account_approved_in_slack(
    slack_live: RunningApp, page: Page, console_errors: list[str]
) -> None:
    app = slack_live
    ctx = app.ctx
    base = app.url.removesuffix("/slack/events")
    person = add_person(ctx, password=None, must_change=False, status=AccountStatus.PENDING)
    old = text_of(send_to(ctx, person.employee_id)["credbot-welcome"])
    temporary = present(re.search(r"temporary password:\s+(\S+)", old)).group(1)
    with ctx.sessions.begin() as session:  # a long weekend later
        session.get_one(Account, person.account_id).temp_password_expires_at = utcnow() - timedelta(hours=1)

    page.goto(base + "/portal/login")
    sign_in(page, "adoe", temporary)
    assert "Your temporary password has expired" in page.inner_text("h1")
    page.click("text=Ask for new credentials")
    page.wait_for_url("**/portal/recover")
    shot(page, "recovery-01-request")
    page.fill("#who", "alice.doe@example.com")
    page.click("button:has-text('Continue')")
    assert "If an account matches what you typed" in page.inner_text("main")
    shot(page, "recovery-02-received")
    jobs.join()

    assert post_cards(ctx, make_web_client(ctx.settings)) == 1
    [card] = [m for (channel, _), m in app.slack.messages.items() if channel == AUDIT_CHANNEL]
    shown = json.dumps(card["blocks"])
    assert "alice.doe@example.com" in shown and "127.0.0.1" in shown and "HeadlessChrome" in shown
    assert "sent" in shown, "the delivery state"
    [approve] = [
        e
        for b in card["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ids.RECOVERY_APPROVE_ACTION
    ]
    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.RECOVERY_APPROVE_ACTION, approve["value"]).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    confirm = app.slack.last_view()
    assert confirm["callback_id"] == ids.CONFIRM_VIEW and "alice.doe@example.com" in json.dumps(confirm)
    before = len(read_outbox(ctx).get("credbot-welcome", []))
    assert app.requests.submit(confirm).status == 200
    app.slack.wait_for(lambda: len(read_outbox(ctx).get("credbot-welcome", [])) > before, what="the email")
    welcome = text_of(read_outbox(ctx)["credbot-welcome"][-1])
    fresh = present(re.search(r"temporary password:\s+(\S+)", welcome)).group(1)
    assert fresh != temporary

    page.goto(base + "/portal/login")
    sign_in(page, "adoe", fresh)
    page.wait_for_url("**/portal/password")
    assert page.locator("#current_password").count() == 0, "not asked again right after signing in"
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("button:has-text('Save new password')")
    page.wait_for_url("**/portal/")
    assert "Hello, Alice" in page.inner_text("h1")
    shot(page, "recovery-03-home")
    assert console_errors == []


def test_a_reset_link_used_once_and_refused_the_second_time(
    live: tuple[Context, LiveServer], page: Page, console_errors: list[str]
) -> None:
    ctx, server = live
    jobs.configure(ctx, redis_url="")
    add_person(ctx, password=NEW_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    page.goto(server.url + "/portal/login")
    page.click("text=Didn't get your email, or it expired?")
    page.fill("#who", "adoe")
    page.click("button:has-text('Continue')")
    assert "Request received" in page.inner_text("h1")
    jobs.join()
    [reset] = read_outbox(ctx)["credbot-password-reset"]
    link = present(re.search(r"(http://\S+/portal/setup/\S+)", text_of(reset))).group(1)

    page.goto(link)
    page.click("button:has-text('Continue')")
    page.wait_for_url("**/portal/setup/password")
    shot(page, "reset-01-choose")
    page.fill("#new_password", LINK_PASSWORD)
    page.fill("#confirm_password", LINK_PASSWORD)
    page.click("button:has-text('Set password')")
    page.wait_for_url("**/portal/")
    page.goto(link)
    page.click("button:has-text('Continue')")
    assert "This link can no longer be used" in page.inner_text("h1")
    shot(page, "reset-02-used")
    assert console_errors == []


def rule_states(page: Page) -> dict[str, str]:
    states: dict[str, str] = page.eval_on_selector_all(
        "#new_password_rules li", "items => Object.fromEntries(items.map(i => [i.dataset.rule, i.className]))"
    )
    return states


def test_the_toggle_and_the_live_rules_and_the_page_without_javascript(
    live: tuple[Context, LiveServer], page: Page, chromium: Browser, console_errors: list[str]
) -> None:
    ctx, server = live
    add_person(ctx)
    page.goto(server.url + "/portal/login")
    sign_in(page, "adoe", "TempPassw0rdXyzQ")
    page.wait_for_url("**/portal/password")
    rules = page.inner_text("#new_password_rules")
    assert "At least 12 characters" in rules and "Without your username or your name" in rules
    assert rule_states(page) == {"length": "", "personal": "", "match": "", "guess": ""}

    page.fill("#new_password", "short")
    assert rule_states(page)["length"] == "unmet"
    page.fill("#new_password", "alice-lantern-orbit")
    assert rule_states(page)["length"] == "met" and rule_states(page)["personal"] == "unmet"
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD + "x")
    assert rule_states(page) == {"length": "met", "personal": "met", "match": "unmet", "guess": ""}
    page.fill("#confirm_password", NEW_PASSWORD)
    assert rule_states(page)["match"] == "met"
    shot(page, "rules-01-live")

    assert page.get_attribute("#new_password", "type") == "password"
    page.check("#show_password")
    assert page.get_attribute("#new_password", "type") == "text"
    assert page.get_attribute("#confirm_password", "type") == "text"
    shot(page, "rules-02-shown")
    page.uncheck("#show_password")
    assert page.get_attribute("#new_password", "type") == "password"
    assert console_errors == []

    # Without JavaScript: no toggle, the rules are listed, and the server judges.
    plain = chromium.new_context(java_script_enabled=False)
    try:
        nojs = plain.new_page()
        add_person(ctx, username="bsmith", first_name="Bob", last_name="Smith", email="bob@example.com")
        nojs.goto(server.url + "/portal/login")
        sign_in(nojs, "bsmith", "TempPassw0rdXyzQ")
        nojs.wait_for_url("**/portal/password")
        assert not nojs.is_visible("#show_password") and nojs.is_visible("#new_password_rules")
        nojs.fill("#new_password", "bob-smith-password")
        nojs.fill("#confirm_password", "bob-smith-password")
        nojs.click("button:has-text('Save new password')")
        assert 'Do not include your name ("Smith")' in nojs.inner_text("#problems")
        nojs.fill("#new_password", LINK_PASSWORD)
        nojs.fill("#confirm_password", LINK_PASSWORD)
        nojs.click("button:has-text('Save new password')")
        nojs.wait_for_url("**/portal/")
    finally:
        plain.close()


def test_the_pages_fit_a_320_pixel_phone(
    live: tuple[Context, LiveServer], chromium: Browser, console_errors: list[str]
) -> None:
    ctx, server = live
    add_person(ctx, department="Finance & Control")
    phone = chromium.new_context(viewport={"width": 320, "height": 640}, device_scale_factor=2)
    try:
        page = phone.new_page()

        def fits(name: str) -> None:
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 320, f"{name} is {width} px wide"
            box = page.locator("main").bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 320, name
            shot(page, f"phone-320-{name}")

        page.goto(server.url + "/portal/login")
        fits("sign-in")
        page.goto(server.url + "/portal/recover")
        fits("recover")
        page.goto(server.url + "/portal/login")
        sign_in(page, "adoe", "TempPassw0rdXyzQ")
        page.wait_for_url("**/portal/password")
        fits("change-password")
        page.fill("#new_password", NEW_PASSWORD)
        page.fill("#confirm_password", NEW_PASSWORD)
        page.click("button:has-text('Save new password')")
        page.wait_for_url("**/portal/")
        main = page.inner_text("main")
        assert "Finance & Control" in main and "Sign out everywhere" in main and "Password changed" in main
        fits("home")
    finally:
        phone.close()
