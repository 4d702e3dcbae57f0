"""Issue 19, items 3, 5 and 6: which address credentials go to and why (CREDENTIAL_ADDRESS), times in the
employee's zone, the manager's Slack notice; and the import's fast address check."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from email_validator import EmailNotValidError, validate_email
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.context import Context
from bot.email_addresses import normalised_address
from bot.mail.render import render_email
from bot.sending.addresses import AddressRule, AddressSetting, choose_address
from bot.sending.outcomes import ADDRESS_CHANGED
from bot.sending.recipients import Recipient, preview
from bot.settings import Settings
from bot.time_zones import local_time, zone_of
from handlers import ids
from handlers.blocks import MAX_BLOCKS
from handlers.manager_notices import notify_managers
from handlers.views_credentials import SWITCHABLE_LIST, FlowState, confirm_view
from models import AccountStatus, BatchSource, Delivery, Employee
from tests.builders import add_employee, address_rule, audit_events
from tests.cli_helpers import RunCli
from tests.credentials_helpers import outbox_text, password_in, send_credentials, standin_text
from tests.portal_helpers import GOOD_PASSWORD, Browser
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.sendgrid import API_KEY as SENDGRID_KEY
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.slack import SlackStandIn, check_view, dm_channel

WORK, PERSONAL = "ada@example.com", "ada.home@mail.example"
MANAGER_SLACK_ID = "UMANAGER01"


def rule_at(now: datetime, setting: AddressSetting = "auto") -> AddressRule:
    return AddressRule(setting, now, "UTC")


def choose(
    now: datetime,
    start: date | None,
    zone: str | None,
    setting: AddressSetting = "auto",
    personal: str | None = PERSONAL,
    work: str | None = WORK,
) -> tuple[str | None, str]:
    choice = choose_address(rule_at(now, setting), 1, work, personal, start, zone)
    return choice.raw, choice.reason


def _at(day: int, hour: int, minute: int) -> datetime:
    """A moment in December 2026, UTC."""
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


# The rule ----------------------------------------------------------------------------------------------


def test_auto_uses_the_personal_address_before_the_start_date_and_says_why() -> None:
    wednesday = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert choose(wednesday, date(2026, 12, 7), "Europe/London") == (PERSONAL, "personal, starts Mon 7 Dec")
    assert choose(wednesday, date(2027, 1, 4), None) == (PERSONAL, "personal, starts Mon 4 Jan 2027")
    assert choose(wednesday, date(2026, 12, 2), None) == (WORK, "work, starts today")
    assert choose(wednesday, date(2026, 11, 30), None) == (WORK, "work, started Mon 30 Nov")
    assert choose(wednesday, None, None) == (WORK, "work: no start date")
    assert choose(wednesday, date(2026, 12, 7), None, personal=None) == (WORK, "work: no personal address")
    assert choose(wednesday, date(2026, 11, 30), None, work=None) == (PERSONAL, "personal, no work address")


def test_work_and_personal_settings() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert choose(now, date(2026, 12, 7), None, "work") == (WORK, "work")
    assert choose(now, date(2026, 11, 1), None, "personal") == (PERSONAL, "personal")
    refused = choose_address(rule_at(now, "personal"), 1, WORK, None, None, None)
    assert (refused.raw, refused.reason, refused.problem) == (
        None,
        "cannot be mailed: no personal address",
        "no personal address",
    )


def test_a_switch_overrides_the_setting_only_for_someone_with_both_addresses() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    rule = AddressRule("auto", now, "UTC", {1: "work", 2: "personal"})
    switched = choose_address(rule, 1, WORK, PERSONAL, date(2026, 12, 7), None)
    assert (switched.raw, switched.reason, switched.switchable) == (
        WORK,
        "work: switched on the confirmation",
        True,
    )
    only_work = choose_address(rule, 2, WORK, None, date(2026, 12, 7), None)
    assert (only_work.raw, only_work.switchable) == (WORK, False)


@pytest.mark.parametrize(
    ("zone", "before", "on_the_day"),
    [
        # Kolkata is UTC+05:30: 7 Dec begins there at 18:30 UTC on the 6th.
        (
            "Asia/Kolkata",
            datetime(2026, 12, 6, 18, 29, tzinfo=UTC),
            datetime(2026, 12, 6, 18, 30, tzinfo=UTC),
        ),
        # Chatham is UTC+13:45 in (southern) summer: 7 Dec begins there at 10:15 UTC on the 6th.
        (
            "Pacific/Chatham",
            datetime(2026, 12, 6, 10, 14, tzinfo=UTC),
            datetime(2026, 12, 6, 10, 15, tzinfo=UTC),
        ),
        # London in winter is UTC itself.
        ("Europe/London", _at(6, 23, 59), _at(7, 0, 0)),
        # New York is UTC-5 in December: the 7th begins there at 05:00 UTC.
        (
            "America/New_York",
            datetime(2026, 12, 7, 4, 59, tzinfo=UTC),
            datetime(2026, 12, 7, 5, 0, tzinfo=UTC),
        ),
    ],
)
def test_the_start_date_is_a_day_in_the_employees_own_zone(
    zone: str, before: datetime, on_the_day: datetime
) -> None:
    start = date(2026, 12, 7)
    assert choose(before, start, zone)[0] == PERSONAL
    assert choose(on_the_day, start, zone) == (WORK, "work, starts today")


def test_a_start_date_on_29_february() -> None:
    start = date(2028, 2, 29)
    assert choose(datetime(2028, 2, 28, 23, 59, tzinfo=UTC), start, "UTC") == (
        PERSONAL,
        "personal, starts Tue 29 Feb",
    )
    assert choose(datetime(2028, 2, 29, 0, 0, tzinfo=UTC), start, "UTC")[0] == WORK
    assert choose(datetime(2027, 12, 1, tzinfo=UTC), start, "UTC")[1] == "personal, starts Tue 29 Feb 2028"


def test_a_start_date_on_the_days_clocks_change() -> None:
    # London springs forward at 01:00 UTC on 28 March 2027; the day still begins at 00:00 GMT.
    spring = date(2027, 3, 28)
    assert choose(datetime(2027, 3, 27, 23, 59, tzinfo=UTC), spring, "Europe/London")[0] == PERSONAL
    assert choose(datetime(2027, 3, 28, 0, 0, tzinfo=UTC), spring, "Europe/London")[0] == WORK
    # New York falls back on 1 November 2026: the day begins at 00:00 EDT, 04:00 UTC.
    fall = date(2026, 11, 1)
    assert choose(datetime(2026, 11, 1, 3, 59, tzinfo=UTC), fall, "America/New_York")[0] == PERSONAL
    assert choose(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), fall, "America/New_York")[0] == WORK


# Local times ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Europe/London", "Monday 7 December 2026, 17:00 GMT"),
        ("America/New_York", "Monday 7 December 2026, 12:00 EST"),
        ("Asia/Kolkata", "Monday 7 December 2026, 22:30 IST"),
        ("Pacific/Chatham", "Tuesday 8 December 2026, 06:45 UTC+13:45"),
        (None, "Monday 7 December 2026, 17:00 UTC"),
    ],
)
def test_times_are_shown_in_the_employees_zone(zone: str | None, shown: str) -> None:
    assert local_time(datetime(2026, 12, 7, 17, 0, tzinfo=UTC), zone_of(zone, "UTC")) == shown


def test_summer_time_shows_its_own_abbreviation() -> None:
    summer = datetime(2027, 7, 1, 12, 0, tzinfo=UTC)
    assert local_time(summer, zone_of("Europe/London", "UTC")) == "Thursday 1 July 2027, 13:00 BST"
    assert local_time(summer, zone_of("Pacific/Chatham", "UTC")).endswith("UTC+12:45")


def test_the_welcome_email_shows_the_expiry_in_the_employees_zone() -> None:
    text, html = render_email(
        "welcome",
        company="Example",
        first_name="Ada",
        username="ada",
        sign_in_url="https://portal.example/login",
        mode="password",
        password="Temp-Passw0rd-123",
        setup_url=None,
        expires_at=datetime(2026, 12, 7, 17, 0, tzinfo=UTC),
        time_zone=zone_of("Asia/Kolkata", "UTC"),
    )
    assert "Monday 7 December 2026, 22:30 IST" in text and "22:30 IST" in html


def test_a_sent_welcome_email_is_in_the_employees_zone(context: Context, session: Session) -> None:
    ada = add_employee(session, "1", email=WORK)
    ada.time_zone = "Pacific/Chatham"
    session.commit()
    summary = send_credentials(context, [ada.id], "cli:test", BatchSource.CLI)
    assert len(summary.sent) == 1
    welcome = outbox_text(context.settings.outbox_dir, WORK, "credbot-welcome")
    assert "UTC+13:45" in welcome or "UTC+12:45" in welcome


# Preview, batch and send time ---------------------------------------------------------------------------


def _new_hire(session: Session, number: str = "1", start: date = date(2099, 1, 5)) -> Employee:
    ada = add_employee(session, number, email=WORK)
    ada.personal_email, ada.start_date, ada.time_zone = PERSONAL, start, "Europe/London"
    session.commit()
    return ada


def test_the_confirmed_personal_address_is_used_and_checked_again_at_send_time(
    context: Context, session: Session
) -> None:
    ada = _new_hire(session)
    (shown,) = preview(session, [ada.id], address_rule())
    assert (shown.address, shown.address_kind, shown.switchable) == (PERSONAL, "personal", True)
    assert shown.address_reason == "personal, starts Mon 5 Jan 2099"
    summary = send_credentials(
        context, [ada.id], "cli:test", BatchSource.CLI, confirmed={ada.id: shown.address}
    )
    assert [o.address for o in summary.sent] == [PERSONAL]

    # Switched to work on the confirmation: any of the employee's addresses is accepted.
    summary = send_credentials(context, [ada.id], "cli:test", BatchSource.CLI, confirmed={ada.id: WORK})
    assert [o.address for o in summary.sent] == [WORK]

    # The personal address changed after the confirmation: skipped, not sent to the work one instead.
    ada.personal_email = "ada.new@mail.example"
    session.commit()
    summary = send_credentials(context, [ada.id], "cli:test", BatchSource.CLI, confirmed={ada.id: PERSONAL})
    assert [(o.address, o.error) for o in summary.skipped] == [(PERSONAL, ADDRESS_CHANGED)]


def test_credential_address_personal_without_one_cannot_be_mailed(session: Session) -> None:
    ada = add_employee(session, "1", email=WORK)
    (shown,) = preview(session, [ada.id], address_rule("personal"))
    assert (shown.address, shown.problem) == (None, "no personal address")
    assert shown.address_reason == "cannot be mailed: no personal address"


def test_the_cli_preview_shows_each_address_and_why(cli: RunCli, session: Session) -> None:
    _new_hire(session, "1")
    add_employee(session, "2", "Alan", "Turing", email="alan@example.com")
    result = cli("credentials", "send", "1", "2", input="n\n")
    assert "WHICH ADDRESS" in result.output
    assert PERSONAL in result.output and "personal, starts Mon 5 Jan 2099" in result.output
    assert "work: no personal address" in result.output
    assert "nothing was sent" in result.output


# Slack -------------------------------------------------------------------------------------------------


def test_the_confirmation_offers_a_switch_per_employee_when_few() -> None:
    rule = address_rule()
    recipients = [_recipient(i, rule) for i in range(3)]
    view = confirm_view(recipients, "password", FlowState(selection="1.x"))
    assert check_view(view) == []
    buttons = [b["accessory"] for b in view["blocks"] if "accessory" in b]
    assert [b["value"] for b in buttons] == ["0:work", "1:work", "2:work"]
    assert all(b["action_id"] == ids.SWITCH_ADDRESS_ACTION for b in buttons)
    assert "personal, starts Mon 7 Dec" in json.dumps(view)


def test_the_confirmation_for_1000_employees_across_20_zones_is_summarised_within_limits() -> None:
    rule = address_rule()
    zones = [
        *("Europe/London", "Europe/Paris", "Europe/Helsinki", "Europe/Moscow", "Africa/Lagos"),
        *(
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Los_Angeles",
            "America/Sao_Paulo",
        ),
        *("Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo", "Asia/Dubai"),
        *(
            "Australia/Adelaide",
            "Australia/Sydney",
            "Pacific/Auckland",
            "Pacific/Chatham",
            "Pacific/Honolulu",
        ),
    ]
    recipients = [_recipient(i, rule, zones[i % 20], day=3 + i % 20) for i in range(1000)]
    view = confirm_view(recipients, "password", FlowState(selection="1.x"))
    assert check_view(view) == []
    assert len(view["blocks"]) <= MAX_BLOCKS
    assert not any("accessory" in b for b in view["blocks"])
    text = json.dumps(view)
    assert "To their personal address: 1,000; to their work address: 0." in text
    assert f"review at most {SWITCHABLE_LIST} employees at a time" in text
    assert len(recipients) > SWITCHABLE_LIST


def _recipient(i: int, rule: AddressRule, zone: str = "Europe/London", day: int = 7) -> Recipient:
    choice = choose_address(rule, i, f"e{i}@example.com", f"p{i}@home.example", date(2026, 12, day), zone)
    return Recipient(
        employee_id=i,
        employee_number=f"E{i:05d}",
        name=f"Person {i}",
        username=f"user{i}",
        address=choice.raw,
        problem=None,
        last_emailed_at=None,
        address_kind=choice.kind,
        address_reason=choice.reason,
        switchable=choice.switchable,
    )


@pytest.fixture
def mail_app(
    settings: Settings, slack_standin: SlackStandIn, sendgrid_standin: SendGridStandIn
) -> Iterator[RunningApp]:
    update = {"sendgrid_api_key": SecretStr(SENDGRID_KEY), "sendgrid_api_host": sendgrid_standin.url}
    yield from serve_app(slack_settings(settings, slack_standin, **update), slack_standin)


def test_switch_in_slack_then_send_and_the_manager_is_told(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app = mail_app
    manager = add_employee(session, "900", "Grace", "Hopper", email="grace@example.com")
    manager.slack_user_id = MANAGER_SLACK_ID
    ada = _new_hire(session)
    ada.manager = "900"
    session.commit()

    assert app.requests.command(text="1").status == 200
    app.slack.wait_for_call("views.open")
    picker = app.slack.last_view()
    app.requests.submit(picker, {ids.EMPLOYEES_ACTION: [(str(ada.id), "Ada Lovelace")]})
    app.slack.wait_for_call("views.update", 1)
    confirm = app.slack.last_view()
    assert "personal, starts Mon 5 Jan 2099" in json.dumps(confirm)
    (button,) = [b["accessory"] for b in confirm["blocks"] if "accessory" in b]
    assert button["value"] == f"{ada.id}:work"

    assert app.requests.block_action(ids.SWITCH_ADDRESS_ACTION, button["value"], view=confirm).status == 200
    app.slack.wait_for_call("views.update", 2)
    switched = app.slack.last_view()
    assert "work: switched on the confirmation" in json.dumps(switched)
    assert check_view(switched) == []

    app.requests.submit(switched)
    app.slack.wait_for(lambda: len(sendgrid_standin.messages) == 2, what="both emails")
    assert {m["personalizations"][0]["to"][0]["email"] for m in sendgrid_standin.messages} == {WORK}

    def told() -> str | None:
        for (channel, _), message in list(app.slack.messages.items()):
            if channel == dm_channel(MANAGER_SLACK_ID):
                return str(message["text"])
        return None

    notice = app.slack.wait_for(told, what="the manager's DM")
    assert "Ada Lovelace" in notice and WORK in notice and "work address" in notice
    assert "Monday 5 January 2099" in notice and "The credentials work until" in notice
    assert "GMT" in notice
    assert password_in(standin_text(sendgrid_standin, WORK, "credbot-welcome")) not in notice
    with app.ctx.sessions() as check:
        assert check.scalar(select(Delivery.manager_notified_at)) is not None
    assert "credentials.manager_notified" in [e.action for e in audit_events(app.ctx.sessions)]


def test_managers_are_told_once_and_not_when_off(
    settings: Settings, slack_standin: SlackStandIn, context: Context, session: Session
) -> None:
    manager = add_employee(session, "900", "Grace", "Hopper", email="grace@example.com")
    manager.slack_user_id = MANAGER_SLACK_ID
    ada = _new_hire(session)
    ada.manager = "900"
    nobody = add_employee(session, "2", "Alan", "Turing", email="alan@example.com")
    nobody.manager = "900"
    manager_without_slack = add_employee(session, "901", "Edsger", "Dijkstra")
    barbara = add_employee(session, "3", "Barbara", "Liskov", email="barbara@example.com")
    barbara.manager = manager_without_slack.employee_number
    session.commit()
    summary = send_credentials(context, [ada.id, barbara.id], "cli:test", BatchSource.CLI)
    assert len(summary.sent) == 2

    off = Context(
        settings=slack_settings(settings, slack_standin, manager_notices=False), sessions=context.sessions
    )
    notify_managers(off, summary.batch_id)
    assert slack_standin.calls_to("chat.postMessage") == []

    on = Context(settings=slack_settings(settings, slack_standin), sessions=context.sessions)
    notify_managers(on, summary.batch_id)
    notify_managers(on, summary.batch_id)  # a retry or a second run tells nobody twice
    (call,) = slack_standin.calls_to("chat.postMessage")
    assert call.args["channel"] == MANAGER_SLACK_ID
    assert "Ada Lovelace" in call.args["text"] and PERSONAL in call.args["text"]
    assert "personal address" in call.args["text"]


# The import's address check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "Ada.Lovelace@EXAMPLE.com",
        "o'brien+tag@Sub.Example.ORG",
        "user@xn--bcher-kva.example",
        "josé@ex.com",
        "a..b@example.com",
        "a@localhost",
        "a@foo.test",
        "a@ex_ample.com",
        '"quoted"@example.com',
        "a@[1.2.3.4]",
        "x" * 65 + "@example.com",
        ".a@example.com",
    ],
)
def test_the_fast_address_check_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = normalised_address(address)
    except EmailNotValidError:
        got = None
    assert got == expected


def test_the_portal_shows_times_in_the_employees_zone(session: Session, browser: Browser) -> None:
    ada = add_employee(session, "1", password=GOOD_PASSWORD, status=AccountStatus.ACTIVE)
    ada.time_zone = "Asia/Kolkata"
    assert ada.account is not None
    ada.account.password_changed_at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    username = ada.account.username
    session.commit()
    assert browser.sign_in(username, GOOD_PASSWORD).status_code == 303
    home = browser.get("/portal/").text
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", home, re.S))
    assert facts["Password changed"] == "Monday 30 November 2026, 14:30 IST"
