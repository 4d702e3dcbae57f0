"""SCIM's new hires and leavers in Slack: grouped once a minute at most (on the injected clock), posted
to the audit channel with Schedule and Review buttons that open the usual confirmation, and listed on
App Home. The SCIM endpoint's audit events are written here directly, as the contract describes them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.audit import AuditAction, employee_target, record
from bot.clock import ManualClock
from bot.context import Context
from bot.scim_notices import GROUP_WINDOW, group_notices, hires_to_confirm, waiting_hires
from bot.settings import Settings
from bot.slack_app import make_web_client
from handlers import ids
from handlers.scim_messages import LISTED, start_text
from handlers.scim_notices import post_notices
from models import Account, Employee, ScimNotice, ScimNoticePerson
from tests.builders import add_employee, audit_events
from tests.scim_helpers import PATCH_SCHEMA, scim_client, user_payload
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.slack import ADMIN_ID, SlackStandIn

AUDIT_CHANNEL = "CAUDIT001"
START = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
"""A Wednesday: Monday 7 December is "Mon 7 Dec"."""


def hire(
    ctx: Context,
    first_name: str,
    last_name: str = "Lovelace",
    start: date | None = date(2026, 12, 7),
    actor: str = "scim:Okta",
    emailed: bool = False,
) -> int:
    """An employee SCIM created (its account never emailed unless `emailed`), and the audit event."""
    with ctx.sessions() as session:
        employee = add_employee(session, first_name=first_name, last_name=last_name)
        employee_id, number = employee.id, employee.employee_number
    with ctx.sessions.begin() as session:
        session.execute(update(Employee).where(Employee.id == employee_id).values(start_date=start))
        if emailed:
            session.execute(
                update(Account).where(Account.employee_id == employee_id).values(credentials_emailed_at=START)
            )
        record(
            session, actor, AuditAction.SCIM_USER_CREATED, employee_target(number), employee_id=employee_id
        )
    return employee_id


def scim_event(ctx: Context, action: AuditAction, employee_id: int, actor: str = "scim:Okta") -> None:
    with ctx.sessions.begin() as session:
        number = session.get_one(Employee, employee_id).employee_number
        if action == AuditAction.SCIM_USER_DEACTIVATED:
            session.execute(update(Employee).where(Employee.id == employee_id).values(active=False))
        record(session, actor, action, employee_target(number), employee_id=employee_id)


def notice_people(ctx: Context, notice_id: int | None) -> set[tuple[int, str]]:
    assert notice_id is not None
    with ctx.sessions() as session:
        query = select(ScimNoticePerson.employee_id, ScimNoticePerson.change)
        return {
            (eid, change)
            for eid, change in session.execute(query.where(ScimNoticePerson.notice_id == notice_id))
        }


def notice_count(ctx: Context) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(ScimNotice)) or 0


# --- grouping (the core) -----------------------------------------------------------------------------------


def test_changes_are_grouped_once_they_have_waited_a_minute_and_one_notice_a_minute_at_most(
    context: Context,
) -> None:
    clock = ManualClock(START)
    ada, grace = hire(context, "Ada"), hire(context, "Grace", "Hopper")
    already = hire(context, "Emailed", emailed=True)  # needs no credentials: not named
    scim_event(context, AuditAction.SCIM_USER_UPDATED, ada)  # not announced
    scim_event(context, AuditAction.SCIM_GROUP_CHANGED, grace)

    assert group_notices(context.sessions, clock.now()) is None, "the first look starts the wait"
    clock.advance(GROUP_WINDOW.total_seconds() - 1)
    assert group_notices(context.sessions, clock.now()) is None
    clock.advance(1)
    first = group_notices(context.sessions, clock.now())
    assert notice_people(context, first) == {(ada, "hired"), (grace, "hired")}
    assert already not in hires_to_confirm(context.sessions())

    # Nothing new: nothing grouped again, however often the job runs.
    for _ in range(3):
        clock.advance(30)
        assert group_notices(context.sessions, clock.now()) is None
    assert notice_count(context) == 1

    # A leaver and a new hire a moment later wait their own minute.
    alan = hire(context, "Alan", "Turing", start=None, actor="scim:Entra ID")
    scim_event(context, AuditAction.SCIM_USER_DEACTIVATED, grace)
    assert group_notices(context.sessions, clock.now()) is None
    clock.advance(59)
    assert group_notices(context.sessions, clock.now()) is None
    clock.advance(1)
    second = group_notices(context.sessions, clock.now())
    assert notice_people(context, second) == {(alan, "hired"), (grace, "left")}
    with context.sessions() as session:
        times = list(session.scalars(select(ScimNotice.grouped_at).order_by(ScimNotice.id)))
        assert times[1] - times[0] >= GROUP_WINDOW
        assert hires_to_confirm(session) == [ada, alan], "by start date; Grace left; Alan has none"
        assert hires_to_confirm(session, second) == [alan]


def test_a_hire_who_left_or_was_emailed_within_the_minute_is_not_offered(context: Context) -> None:
    clock = ManualClock(START)
    ada, grace = hire(context, "Ada"), hire(context, "Grace", "Hopper")
    scim_event(context, AuditAction.SCIM_USER_DEACTIVATED, ada)
    with context.sessions.begin() as session:
        session.execute(
            update(Account).where(Account.employee_id == grace).values(credentials_emailed_at=START)
        )
    group_notices(context.sessions, clock.now())
    clock.advance(60)
    notice = group_notices(context.sessions, clock.now())
    assert notice_people(context, notice) == {(ada, "left")}


def test_two_groupers_at_once_make_one_notice(context: Context) -> None:
    clock = ManualClock(START)
    for name in ("Ada", "Grace", "Alan"):
        hire(context, name)
    group_notices(context.sessions, clock.now())
    clock.advance(60)
    made: list[int | None] = []
    barrier = threading.Barrier(4)

    def group() -> None:
        barrier.wait()
        made.append(group_notices(context.sessions, clock.now()))

    threads = [threading.Thread(target=group) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([notice for notice in made if notice is not None]) == 1
    assert notice_count(context) == 1


def test_what_the_scim_endpoint_records_is_grouped(context: Context) -> None:
    """The contract end to end: users created and deactivated through /scim/v2 make one notice."""
    clock = ManualClock(START)
    okta = scim_client(context, "Okta")
    ada = okta.post("/Users", user_payload("ada", "E1", start_date="2026-12-07"))
    grace = okta.post(
        "/Users", user_payload("grace", "E2", given="Grace", work="grace@example.com", external_id="2")
    )
    assert (ada.status, grace.status) == (201, 201)
    left = {"Operations": [{"op": "Replace", "value": {"active": "False"}}], "schemas": [PATCH_SCHEMA]}
    assert okta.patch(f"/Users/{grace.body['id']}", left).status == 200
    group_notices(context.sessions, clock.now())
    clock.advance(GROUP_WINDOW.total_seconds())
    notice = group_notices(context.sessions, clock.now())
    with context.sessions() as session:
        [ada_id] = session.scalars(select(Employee.id).where(Employee.employee_number == "E1"))
        [grace_id] = session.scalars(select(Employee.id).where(Employee.employee_number == "E2"))
        actors = set(session.scalars(select(ScimNoticePerson.actor)))
    assert notice_people(context, notice) == {(ada_id, "hired"), (grace_id, "left")}
    assert actors == {"scim:okta"}, "token names are kept lower-case"


def test_start_dates_read_as_people_say_them() -> None:
    today = date(2026, 12, 2)
    assert start_text(date(2026, 12, 7), today) == "starts Mon 7 Dec"
    assert start_text(date(2027, 1, 4), today) == "starts Mon 4 Jan 2027"
    assert start_text(date(2026, 11, 30), today) == "started Mon 30 Nov"
    assert start_text(None, today) == "no start date"


# --- Slack: the notice, its buttons, App Home ---------------------------------------------------------------


@pytest.fixture
def slack_app(settings: Settings, slack_standin: SlackStandIn) -> Iterator[RunningApp]:
    configured = slack_settings(settings, slack_standin, audit_channel_id=AUDIT_CHANNEL)
    slack_standin.channels.add(AUDIT_CHANNEL)
    yield from serve_app(configured, slack_standin)


def posted(app: RunningApp) -> list[dict[str, Any]]:
    return [m for (channel, _), m in sorted(app.slack.messages.items()) if channel == AUDIT_CHANNEL]


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message["blocks"]
    return blocks if isinstance(blocks, list) else list(json.loads(blocks))


def buttons_of(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def grouped(ctx: Context, clock: ManualClock) -> int:
    group_notices(ctx.sessions, clock.now())
    clock.advance(GROUP_WINDOW.total_seconds())
    notice = group_notices(ctx.sessions, clock.now())
    assert notice is not None
    return notice


def test_the_notice_names_the_hires_and_its_buttons_open_the_usual_confirmation(
    slack_app: RunningApp,
) -> None:
    app, clock = slack_app, ManualClock(START)
    ctx = replace(slack_app.ctx, clock=clock)
    ada = hire(ctx, "Ada")
    grace = hire(ctx, "Grace", "Hopper", start=date(2026, 12, 8))
    eve = hire(ctx, "Eve <!channel> *now*", "http://evil.example/reset", start=None)
    grouped(ctx, clock)
    client = make_web_client(ctx.settings)

    app.slack.channels.discard(AUDIT_CHANNEL)  # credbot not in the channel yet: the notice waits
    assert post_notices(ctx, client) == 0
    assert audit_events(ctx.sessions, "slack.call_failed")[0].details["error"] == "channel_not_found"
    app.slack.channels.add(AUDIT_CHANNEL)
    assert post_notices(ctx, client) == 1
    assert post_notices(ctx, client) == 0, "posted once"
    [message] = posted(app)
    assert message["text"].startswith(
        "Okta added 3 new hires: Ada Lovelace (starts Mon 7 Dec), Grace Hopper (starts Tue 8 Dec), Eve"
    )
    shown = json.dumps(message)
    assert "<!channel>" not in shown and "http://" not in shown and "evil[.]example" in shown
    assert "*now*" not in shown, "their markup is made inert"
    buttons = buttons_of(blocks_of(message))
    assert buttons[ids.SCIM_SCHEDULE_ACTION]["text"]["text"] == "Schedule for their start dates"
    notice_id = buttons[ids.SCIM_REVIEW_ACTION]["value"]

    # Only admins: a refusal is audited and nothing opens.
    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.SCIM_REVIEW_ACTION, notice_id, "UOTHER01").status == 200
    app.slack.wait_for(lambda: audit_events(ctx.sessions, "access.refused"), what="the refusal's audit")

    for action in (ids.SCIM_SCHEDULE_ACTION, ids.SCIM_REVIEW_ACTION):
        assert app.requests.block_action(action, notice_id).status == 200
        opened += 1
        app.slack.wait_for_call("views.open", opened)
        confirm = app.slack.last_view()
        assert confirm["callback_id"] == ids.CONFIRM_VIEW and "Send emails" in json.dumps(confirm)
        with ctx.sessions() as session:
            addresses = [session.get_one(Employee, employee_id).email for employee_id in (ada, grace, eve)]
        assert all(address and address in json.dumps(confirm) for address in addresses)
    with ctx.sessions() as session:
        emailed = session.scalar(select(func.count()).where(Account.credentials_emailed_at.is_not(None)))
        assert emailed == 0, "nothing is emailed before an admin confirms"

    assert app.requests.submit(confirm).status == 200  # "Send emails"
    app.slack.wait_for(lambda: not hires_to_confirm(ctx.sessions()), what="the hires emailed")
    told = len(app.slack.calls_to("chat.postEphemeral"))
    assert app.requests.block_action(ids.SCIM_REVIEW_ACTION, notice_id).status == 200
    calls = app.slack.wait_for_call("chat.postEphemeral", told + 1)
    assert "have all been emailed" in calls[-1].args["text"]


def test_leavers_are_summarised_and_a_large_import_stays_within_slacks_limits(slack_app: RunningApp) -> None:
    app, clock = slack_app, ManualClock(START)
    ctx = replace(slack_app.ctx, clock=clock)
    hires = [hire(ctx, f"Hire{i:03d}") for i in range(LISTED + 40)]
    for employee_id in hires[:3]:
        scim_event(ctx, AuditAction.SCIM_USER_DEACTIVATED, employee_id, actor="scim:Entra ID")
    grouped(ctx, clock)
    assert post_notices(ctx, make_web_client(ctx.settings)) == 1
    assert app.slack.problems == []
    [message] = posted(app)
    assert f"Okta added {LISTED + 37} new hires: Hire003 Lovelace (starts Mon 7 Dec)" in message["text"]
    assert (
        "Entra ID deactivated 3 employees: Hire000 Lovelace, Hire001 Lovelace, Hire002 Lovelace"
        in message["text"]
    )
    shown = json.dumps(blocks_of(message), ensure_ascii=False)
    assert "…and 37 more" in shown and "scheduled sends cancelled" in shown


def test_app_home_lists_the_hires_who_still_need_credentials(slack_app: RunningApp) -> None:
    app, clock = slack_app, ManualClock(START)
    ctx = replace(slack_app.ctx, clock=clock)
    for i in range(7):
        hire(ctx, f"Hire{i}")
    hire(ctx, "Zebedee", emailed=True)
    grouped(ctx, clock)
    with ctx.sessions() as session:
        assert waiting_hires(session, 5).count == 7

    assert app.requests.home_opened().status == 200
    app.slack.wait_for(lambda: ADMIN_ID in app.slack.home_views, what="App Home")
    home = app.slack.home_views[ADMIN_ID]
    [shown] = [b["text"]["text"] for b in home["blocks"] if "New hires from the identity" in json.dumps(b)]
    assert shown.startswith("*New hires from the identity provider, awaiting credentials: 7*")
    assert "Hire0 Lovelace" in shown and "…and 2 more" in shown and "Zebedee" not in shown
    buttons = buttons_of(home["blocks"])
    assert buttons[ids.SCIM_REVIEW_ACTION]["value"] == ids.SCIM_ALL_HIRES

    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.SCIM_SCHEDULE_ACTION, ids.SCIM_ALL_HIRES, view=home).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    confirm = json.dumps(app.slack.last_view())
    assert "7 employees" in confirm and "Zebedee" not in confirm
