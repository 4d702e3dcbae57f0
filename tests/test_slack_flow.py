"""The /email-credentials flow through the real app over HTTP, signed like Slack, against stand-ins."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.settings import Settings
from handlers import ids
from models import AuditEvent, CredentialBatch
from tests.slack_data import add_employee
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.sendgrid import API_KEY as SENDGRID_KEY
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.slack import CHANNEL_ID, SlackStandIn


def audit_actions(app: RunningApp) -> list[str]:
    with app.ctx.sessions() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_command_acks_at_once_and_opens_the_picker(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "1001", "Ada", "Lovelace")
    add_employee(session, "1002", "Alan", "Turing")
    session.commit()

    answer = app.requests.command(text="1001 nobody@example.com")

    assert answer.status == 200
    assert answer.body == ""
    call = app.slack.wait_for_call("views.open")[0]
    assert call.args["trigger_id"].endswith(".trigger.standin")
    view = app.slack.last_view()
    assert view["callback_id"] == ids.PICKER_VIEW
    picker = view["blocks"][1]["element"]
    assert [o["value"] for o in picker["initial_options"]] == [str(1)]
    assert "Ada Lovelace" in picker["initial_options"][0]["text"]["text"]
    assert "Not found: nobody@example.com" in json.dumps(view)
    assert "Everyone never emailed (2)" in json.dumps(view)
    assert json.loads(view["private_metadata"])["channel"] == CHANNEL_ID
    assert app.slack.problems == []


@pytest.fixture
def mail_app(
    settings: Settings, slack_standin: SlackStandIn, sendgrid_standin: SendGridStandIn
) -> Iterator[RunningApp]:
    """The app with mail going to the SendGrid stand-in."""
    update = {"sendgrid_api_key": SecretStr(SENDGRID_KEY), "sendgrid_api_host": sendgrid_standin.url}
    yield from serve_app(slack_settings(settings, slack_standin, **update), slack_standin)


def open_picker(app: RunningApp, text: str = "") -> dict[str, Any]:
    before = len(app.slack.calls_to("views.open"))
    assert app.requests.command(text=text).status == 200
    app.slack.wait_for_call("views.open", before + 1)
    return app.slack.last_view()


def review(app: RunningApp, picker: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    answer = app.requests.submit(picker, values)
    assert answer.status == 200, answer.body
    return answer.json()


def batch_message(app: RunningApp) -> tuple[str, str]:
    """(channel, ts) of the batch's channel message, once it shows the final summary."""

    def final() -> tuple[str, str] | None:
        for key, message in list(app.slack.messages.items()):
            if "thread_ts" not in message and "emailed Self-Service credentials (batch" in message.get(
                "text", ""
            ):
                return key
        return None

    return app.slack.wait_for(final, what="the batch summary")


def test_happy_path_from_command_to_mail_and_channel_summary(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app = mail_app
    ada = add_employee(session, "1001", "Ada", "Lovelace", "ada@example.com", "alovelace")
    add_employee(session, "1002", "Alan", "Turing", None, "aturing")
    session.commit()

    picker = open_picker(app)
    options = app.requests.options("lovel").json()["options"]
    assert [o["value"] for o in options] == [str(ada.id)]
    chosen = [(o["value"], o["text"]["text"]) for o in options]

    answer = review(app, picker, {ids.EMPLOYEES_ACTION: [*chosen, ("2", "Alan Turing")]})
    assert answer["response_action"] == "update"
    confirm = answer["view"]
    text = json.dumps(confirm)
    assert confirm["callback_id"] == ids.CONFIRM_VIEW
    assert "ada@example.com" in text and "alovelace" in text
    assert "Cannot be emailed (1)" in text and "Alan Turing" in text
    assert "can only be emailed now" in text and "replaces the old one" in text
    assert "`password`" in text

    # Slack keeps the view it was answered with; the admin presses "Send emails".
    sent = app.requests.submit({**confirm, "id": "VCONFIRM1"})
    assert sent.json()["response_action"] == "update"
    assert "Sending started" in json.dumps(sent.json()["view"])

    channel, ts = batch_message(app)
    assert channel == CHANNEL_ID
    summary = app.slack.messages[(channel, ts)]["text"]
    assert "*1 sent*" in summary and "*0 failed*" in summary and "*1 skipped*" in summary
    thread = app.slack.wait_for(
        lambda: "\n".join(m["text"] for m in app.slack.thread(channel, ts)), what="thread replies"
    )
    assert "Sent (1)" in thread and "ada@example.com" in thread and "Skipped (1)" in thread
    assert [m["personalizations"][0]["to"][0]["email"] for m in sendgrid_standin.messages] == [
        "ada@example.com",
        "ada@example.com",
    ]
    actions = audit_actions(app)
    assert actions.count("credentials.selection_saved") == 1
    assert "credentials.batch_started" in actions
    assert app.slack.problems == []


def test_signed_requests_only(running_slack_app: RunningApp) -> None:
    app = running_slack_app
    body = app.requests.command_body()
    bad = app.requests.post(body, signature="v0=" + "0" * 64)
    stale = app.requests.post(body, timestamp=int(time.time()) - 600)
    assert (bad.status, stale.status) == (401, 401)
    time.sleep(0.3)  # give a wrongly accepted request time to reach Slack: nothing may arrive
    assert app.slack.calls_to("views.open") == []
    assert audit_actions(app) == []


def test_non_admins_are_refused_everywhere(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "1001")
    session.commit()
    stranger = "USTRANGER1"

    command = app.requests.command(user_id=stranger)
    assert command.json()["response_type"] == "ephemeral" and "only credbot admins" in command.json()["text"]
    assert app.requests.options("ada", user_id=stranger).json() == {"options": []}
    picker = open_picker(app)  # a real view, submitted by someone else
    crafted = app.requests.submit(picker, {ids.PRESETS_ACTION: [ids.PRESET_NEVER_EMAILED]}, user_id=stranger)
    assert crafted.json()["response_action"] == "update"
    assert crafted.json()["view"]["title"]["text"] == "Not allowed"
    confirm = app.requests.submit(
        {**picker, "callback_id": ids.CONFIRM_VIEW, "private_metadata": '{"selection":"1.x"}'},
        user_id=stranger,
    )
    assert confirm.json()["view"]["title"]["text"] == "Not allowed"
    assert app.requests.block_action(ids.RETRY_FAILED_ACTION, "1", user_id=stranger).status == 200
    ephemeral = app.slack.wait_for_call("chat.postEphemeral")[0]
    assert ephemeral.args["user"] == stranger

    with app.ctx.sessions() as check:
        refused = check.scalars(select(AuditEvent).where(AuditEvent.action == "access.refused")).all()
    assert sorted(event.details["kind"] for event in refused) == [
        "block_actions",
        "command",
        "options",
        "view_submission",
        "view_submission",
    ]
    assert {event.actor for event in refused} == {f"slack:{stranger}"}
    assert len(app.slack.calls_to("views.open")) == 1  # only the admin's
    with app.ctx.sessions() as check:
        assert check.scalars(select(CredentialBatch)).all() == []
