"""App Home and the jobs next to emailing, through the real app over HTTP, signed like Slack."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import jobs
from bot.context import Context
from bot.passwords import hash_password
from bot.portal.auth import SignInOutcome, sign_in
from bot.settings import PROJECT_ROOT, Settings
from handlers import ids
from handlers.digest import DigestNotPosted, daily_digest, post_digest
from models import (
    Account,
    AccountStatus,
    AuditEvent,
    Employee,
    Role,
    make_engine,
    make_session_factory,
    utcnow,
)
from tests.builders import add_batch, add_delivery, add_employee, audit_events, present
from tests.credentials_helpers import outbox_messages
from tests.slack_requests import RunningApp, slack_settings
from tests.standins.slack import ADMIN_ID, SlackStandIn, dm_channel
from tests.test_slack_views import assert_valid_with_slack_sdk

STRANGER = "USTRANGER1"


def open_home(app: RunningApp, user_id: str = ADMIN_ID) -> dict[str, Any]:
    before = len(app.slack.calls_to("views.publish"))
    answer = app.requests.home_opened(user_id)
    assert answer.status == 200
    app.slack.wait_for_call("views.publish", before + 1)
    view = app.slack.home_views[user_id]
    assert_valid_with_slack_sdk(view)
    return view


def click(app: RunningApp, action_id: str, value: str = "", view: dict[str, Any] | None = None) -> None:
    assert app.requests.block_action(action_id, value, view=view or {"type": "home"}).status == 200


def opened_view(app: RunningApp, action_id: str, value: str = "") -> dict[str, Any]:
    before = len(app.slack.calls_to("views.open"))
    click(app, action_id, value)
    app.slack.wait_for_call("views.open", before + 1)
    view = app.slack.last_view()
    assert_valid_with_slack_sdk(view)
    return view


def submit_and_wait(app: RunningApp, view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Submit a modal whose work runs after the ack; the view it ends with (after views.update)."""
    before = len(app.slack.calls_to("views.update"))
    answer = app.requests.submit(view, values).json()
    assert answer["response_action"] == "update", answer
    app.slack.wait_for_call("views.update", before + 1)
    return app.slack.last_view()


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def emailed(session: Session, number: str, hours_left: float) -> Employee:
    employee = add_employee(session, number, "Emil", f"Mailed{number}", status="invited")
    assert employee.account is not None
    employee.account.credentials_emailed_at = utcnow() - timedelta(days=1)
    employee.account.must_change_password = True
    employee.account.temp_password_expires_at = utcnow() + timedelta(hours=hours_left)
    return employee


def test_app_home_shows_every_stage_with_its_action(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "100", "<!channel>", "Noaccount", username=None)
    add_employee(session, "200", "Nev", "Neveremailed")
    emailed(session, "300", 5)
    emailed(session, "301", -3)
    locked = add_employee(session, "400", "Lou", "Locked")
    present(locked.account).locked_until = utcnow() + timedelta(minutes=10)
    session.commit()
    batch = add_batch(session, requested_by=f"slack:{ADMIN_ID}", source="slack")
    add_delivery(session, batch, locked, mail_state="bounced")

    view = open_home(app)
    text = text_of(view)
    assert (
        "Employees without an account: 1" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text
    )
    assert "Accounts never emailed: 2" in text and "Expiring within 24 hours: 1" in text
    assert "Expired unused: 1" in text and "Locked accounts: 1" in text and "Disabled accounts: 0" in text
    assert "hours left" in text and "expired 3 hours ago" in text
    assert "Activation funnel:* 2 emailed" in text
    assert f"#{batch.id} · *finished* · 1 sent" in text and "*1 delivery problem*" in text
    buttons = [e["action_id"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    for action in (
        ids.HOME_CREATE_ACCOUNTS,
        ids.HOME_EMAIL_NEVER_EMAILED,
        ids.HOME_RESEND,
        ids.HOME_UNLOCK_ALL,
    ):
        assert action in buttons
    assert app.slack.problems == []


def test_non_admins_get_a_short_home_and_every_click_is_refused(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    add_employee(session, "100", "Secret", "Person", username=None)
    session.commit()
    view = open_home(app, STRANGER)
    assert f"<@{ADMIN_ID}>" in text_of(view) and "Secret" not in text_of(view)
    assert audit_events(app.ctx.sessions, "access.refused") == []  # opening the tab is not an attempt to act

    home_actions = [value for name, value in vars(ids).items() if name.startswith(("HOME_", "ROW_"))]
    home_actions.append(ids.LIST_PAGE_ACTION)
    for action in home_actions:
        assert app.requests.block_action(action, "100", user_id=STRANGER, view={"type": "home"}).status == 200
    for callback in (ids.CREATE_ACCOUNTS_VIEW, ids.RENAME_VIEW, ids.ROLES_VIEW, ids.MANAGE_VIEW):
        crafted = {"id": "VX", "type": "modal", "callback_id": callback, "blocks": [], "private_metadata": ""}
        answer = app.requests.submit(crafted, user_id=STRANGER).json()
        assert answer["view"]["title"]["text"] == "Not allowed"
    refused = audit_events(app.ctx.sessions, "access.refused")
    assert sorted(present(e.target) for e in refused if e.details["kind"] == "block_actions") == sorted(
        home_actions
    )
    assert len([e for e in refused if e.details["kind"] == "view_submission"]) == 4
    app.slack.wait_for_call("chat.postMessage", len(home_actions))  # each told, in a DM
    assert app.slack.calls_to("views.open") == [] and app.slack.files == {}
    with app.ctx.sessions() as check:
        assert check.scalars(select(Account)).all() == []


def test_create_accounts_from_home(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    for n in range(3):
        add_employee(session, f"10{n}", "Ann", f"New{n}", username=None)
    session.commit()
    confirm = opened_view(app, ids.HOME_CREATE_ACCOUNTS)
    assert confirm["callback_id"] == ids.CREATE_ACCOUNTS_VIEW and "3 active employees" in text_of(confirm)
    publishes = len(app.slack.calls_to("views.publish"))
    done = submit_and_wait(app, confirm, {})
    assert "Created 3 accounts" in text_of(done)
    with app.ctx.sessions() as check:
        assert len(check.scalars(select(Account)).all()) == 3
    app.slack.wait_for_call("views.publish", publishes + 1)
    assert "Employees without an account: 0" in text_of(app.slack.home_views[ADMIN_ID])
    again = app.requests.submit(confirm).json()  # a second submission creates nothing more
    assert again["response_action"] == "update"
    assert len(audit_events(app.ctx.sessions, "account.created")) == 3


def test_email_and_resend_open_the_picker_preselected(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    add_employee(session, "200")
    expired = emailed(session, "301", -3)
    session.commit()
    picker = opened_view(app, ids.HOME_EMAIL_NEVER_EMAILED)
    assert picker["callback_id"] == ids.PICKER_VIEW
    assert [o["value"] for o in picker["blocks"][2]["element"]["initial_options"]] == [
        ids.PRESET_NEVER_EMAILED
    ]
    picker = opened_view(app, ids.HOME_RESEND, "expired")
    assert [o["value"] for o in picker["blocks"][1]["element"]["initial_options"]] == [str(expired.id)]


def test_show_all_pages_and_unlocks_a_row(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    for n in range(25):
        employee = add_employee(session, f"{n:03d}", "Lou", f"Locked{n:02d}")
        present(employee.account).locked_until = utcnow() + timedelta(minutes=10)
    session.commit()
    first = opened_view(app, ids.HOME_SHOW_ALL, "locked")
    assert "Locked accounts (25)" in text_of(first) and "Page 1 of 2" in text_of(first)
    rows = [b for b in first["blocks"] if b.get("accessory")]
    assert len(rows) == 20 and rows[0]["accessory"]["action_id"] == ids.ROW_UNLOCK_ACTION
    updates = len(app.slack.calls_to("views.update"))
    click(app, ids.LIST_PAGE_ACTION, "locked:1", view=first)
    app.slack.wait_for_call("views.update", updates + 1)
    second = app.slack.last_view()
    assert "Page 2 of 2" in text_of(second) and len([b for b in second["blocks"] if b.get("accessory")]) == 5
    assert_valid_with_slack_sdk(second)
    click(app, ids.ROW_UNLOCK_ACTION, str(employee.id), view=second)  # the last one added: 024
    app.slack.wait_for_call("views.update", updates + 2)
    assert "Locked accounts (24)" in text_of(app.slack.last_view())
    assert [e.target for e in audit_events(app.ctx.sessions, "account.unlocked")] == ["account:user024"]

    app.slack.wait_for_call("views.publish", 1)  # App Home is refreshed after the row's unlock
    click(app, ids.HOME_UNLOCK_ALL)
    app.slack.wait_for_call("views.publish", 2)
    app.slack.wait_for(
        lambda: len(audit_events(app.ctx.sessions, "account.unlocked")) == 25, what="every account unlocked"
    )
    assert "Locked accounts: 0" in text_of(app.slack.home_views[ADMIN_ID])


def test_rename_end_to_end(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    ada = add_employee(
        session, "1001", "Ada", "Lovelace", email="ada@example.com", username="alovelace", status="active"
    )
    add_employee(session, "1002", "Alan", "Turing", username="aturing")
    present(ada.account).password_hash = hash_password("correct horse battery")
    session.commit()
    modal = opened_view(app, ids.HOME_RENAME)
    options = app.requests.options("lovel", view=modal).json()["options"]
    assert [o["value"] for o in options] == [str(ada.id)]
    pick = (str(ada.id), "Ada Lovelace")
    for bad, message in (("aturing", "already taken"), ("Ada Lovelace", "must be")):
        answer = app.requests.submit(
            modal, {ids.RENAME_EMPLOYEE_ACTION: pick, ids.USERNAME_ACTION: bad}
        ).json()
        assert answer["response_action"] == "errors" and message in answer["errors"][ids.USERNAME_BLOCK]
    answer = app.requests.submit(modal, {ids.RENAME_EMPLOYEE_ACTION: pick, ids.USERNAME_ACTION: "ada.byron"})
    assert "Renamed `alovelace` to `ada.byron`" in json.dumps(answer.json()["view"])

    outbox = app.ctx.settings.outbox_dir

    def written() -> list[Any]:  # the worker may still be writing the file: wait for its last part
        return [m for m in outbox_messages(outbox) if m.get_body(("html",)) is not None]

    (mail,) = app.slack.wait_for(written, what="the rename email")
    assert (
        mail["To"] == "Ada Lovelace <ada@example.com>"
        and mail["X-Credbot-Category"] == "credbot-username-changed"
    )
    body = mail.get_body(("plain",)).get_content()
    assert "ada.byron" in body and "alovelace" in body
    (event,) = audit_events(app.ctx.sessions, "account.renamed")
    assert event.actor == f"slack:{ADMIN_ID}" and event.details["old_username"] == "alovelace"
    assert sign_in(app.ctx, "alovelace", "correct horse battery").outcome == SignInOutcome.REFUSED
    assert sign_in(app.ctx, "ada.byron", "correct horse battery").outcome == SignInOutcome.OK


def test_bulk_roles_end_to_end(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    for n in range(4):
        add_employee(session, f"{n}").department = "Finance" if n < 3 else "Sales"
    session.add(Role(name="Legacy"))
    session.commit()
    modal = opened_view(app, ids.HOME_ROLES)
    nothing = app.requests.submit(modal, {ids.ADD_ROLES_ACTION: "Approver"}).json()
    assert nothing["response_action"] == "errors" and ids.DEPARTMENT_BLOCK in nothing["errors"]
    done = submit_and_wait(
        app, modal, {ids.DEPARTMENT_ACTION: "finance", ids.ADD_ROLES_ACTION: "Approver, Auditor"}
    )
    assert "Changed the roles of 3 account(s)" in text_of(done)
    (group,) = audit_events(app.ctx.sessions, "account.roles_edited")
    assert group.details == {"add": ["Approver", "Auditor"], "remove": [], "employees": 3}
    per_employee = audit_events(app.ctx.sessions, "account.roles_changed")
    assert sorted(e.details["employee_number"] for e in per_employee) == ["0", "1", "2"]
    with app.ctx.sessions() as check:  # the per-employee events point at the group event's id
        group_id = check.scalar(select(AuditEvent.id).where(AuditEvent.action == "account.roles_edited"))
    assert {e.details["group"] for e in per_employee} == {group_id}
    failed = submit_and_wait(app, modal, {ids.DEPARTMENT_ACTION: "Sales", ids.REMOVE_ROLES_ACTION: "Ghost"})
    assert "No such role: Ghost." in text_of(failed)


def test_disable_and_enable_from_home(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    ada = add_employee(session, "1001")
    session.commit()
    modal = opened_view(app, ids.HOME_MANAGE)
    pick = [(str(ada.id), "Ada")]
    done = submit_and_wait(
        app, modal, {ids.EMPLOYEES_ACTION: pick, ids.MANAGE_CHOICE_ACTION: ids.MANAGE_DISABLE}
    )
    assert "Disabled 1 account" in text_of(done)
    with app.ctx.sessions() as check:
        assert check.scalars(select(Account.status)).one() == AccountStatus.DISABLED
    done = submit_and_wait(
        app, modal, {ids.EMPLOYEES_ACTION: pick, ids.MANAGE_CHOICE_ACTION: ids.MANAGE_ENABLE}
    )
    assert "Enabled 1 account" in text_of(done)
    assert [
        e.action
        for e in audit_events(app.ctx.sessions, "account.disabled")
        + audit_events(app.ctx.sessions, "account.enabled")
    ] == [
        "account.disabled",
        "account.enabled",
    ]


def uploaded_csv(app: RunningApp, count: int = 1) -> list[list[str]]:
    app.slack.wait_for(lambda: len([f for f in app.slack.files.values() if f.get("channel")]) >= count)
    shared = [f for f in app.slack.files.values() if f.get("channel")][-1]
    assert shared["channel"] == dm_channel(ADMIN_ID) and shared["name"].endswith(".csv")
    assert shared["content"].startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    return list(csv.reader(io.StringIO(shared["content"].decode("utf-8-sig"), newline="")))


def test_report_from_home_and_the_command_lands_in_the_dm(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    add_employee(session, "1001", "=cmd|' /C calc'!A0", "Evil", username="evil")
    add_employee(session, "1002", "Ada", "Lovelace", username="ada")
    session.commit()
    click(app, ids.HOME_REPORT)
    rows = uploaded_csv(app)
    assert rows[0][:5] == ["employee_number", "name", "email", "department", "username"]
    assert rows[1][1] == "'=cmd|' /C calc'!A0 Evil" and rows[2][4] == "ada"
    answer = app.requests.command(text="report").json()
    assert "account report" in answer["text"] and answer["response_type"] == "ephemeral"
    assert len(uploaded_csv(app, 2)) == 3
    app.slack.wait_for(
        lambda: len(audit_events(app.ctx.sessions, "report.accounts_exported")) == 2,
        what="both reports audited",
    )
    assert app.slack.problems == []


def test_help_lists_what_the_command_accepts(running_slack_app: RunningApp) -> None:
    answer = running_slack_app.requests.command(text="help").json()
    assert answer["response_type"] == "ephemeral"
    for word in ("`pending`", "`report`", "`help`", "employee numbers"):
        assert word in answer["text"]
    assert running_slack_app.slack.calls_to("views.open") == []


def test_manifest_asks_for_exactly_what_credbot_uses() -> None:
    manifest = (PROJECT_ROOT / "manifest.yml").read_text()
    scopes = re.search(r"\n    bot:\n((?:      .*\n)+)", manifest)
    assert scopes is not None
    assert re.findall(r"^      - (\S+)$", scopes.group(1), re.MULTILINE) == [
        "commands",
        "chat:write",
        "files:write",
    ]
    events = re.search(r"\n    bot_events:\n((?:      .*\n)+)", manifest)
    assert events is not None
    assert re.findall(r"^      - (\S+)$", events.group(1), re.MULTILINE) == ["app_home_opened"]
    assert "home_tab_enabled: true" in manifest


def test_the_digest_is_posted_to_the_audit_channel(
    settings: Settings, slack_standin: SlackStandIn, session: Session
) -> None:
    emailed(session, "300", 5)
    emailed(session, "301", -2)
    session.commit()
    slack_standin.channels.add("CAUDIT001")
    ctx = Context(
        slack_settings(settings, slack_standin, audit_channel_id="CAUDIT001"),
        make_session_factory(make_engine(settings.database_url)),
    )
    ts = post_digest(ctx)
    message = slack_standin.messages[("CAUDIT001", ts)]
    assert "1 expiring within 24 hours, 1 expired unused since yesterday, 0 locked" in message["text"]
    assert "Mailed300" in json.dumps(message["blocks"]) and slack_standin.problems == []
    (event,) = audit_events(ctx.sessions, "digest.posted")
    assert event.target == "CAUDIT001" and event.details["expiring"] == 1
    slack_standin.fail("chat.postMessage", "not_in_channel")
    with pytest.raises(DigestNotPosted, match="not a member of that channel"):
        post_digest(ctx)
    ctx.sessions.kw["bind"].dispose()


def test_the_digest_runs_daily_at_digest_time_and_not_when_empty(
    settings: Settings, slack_standin: SlackStandIn, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    emailed(session, "300", 5)
    session.commit()
    slack_standin.channels.add("CAUDIT001")
    engine = make_engine(settings.database_url)
    for digest_time, expected in (("", []), ("07:30", [daily_digest.name])):
        monkeypatch.setattr(jobs, "_schedules", {})
        jobs.daily(at=lambda s: s.digest_time)(daily_digest)  # as handlers.digest declares it
        configured = slack_settings(
            settings, slack_standin, audit_channel_id="CAUDIT001", digest_time=digest_time
        )
        jobs.configure(Context(configured, make_session_factory(engine)), redis_url="")
        at = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
        assert jobs.Scheduler().run_due(at) == expected
        jobs.join()
    (posted,) = slack_standin.calls_to("chat.postMessage")
    assert posted.args["channel"] == "CAUDIT001" and "1 expiring within 24 hours" in posted.args["text"]
    jobs.shutdown()
    engine.dispose()
    with pytest.raises(ValueError, match="DIGEST_TIME must be HH:MM"):
        settings.model_validate({**settings.model_dump(), "digest_time": "7.30am"})
