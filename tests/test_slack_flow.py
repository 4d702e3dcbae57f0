"""The /email-credentials flow through the real app over HTTP, signed like Slack, against stand-ins."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.admins import add_admin, remove_admin
from bot.sending.batches import start_batch
from bot.settings import Settings
from handlers import ids
from models import BatchSource, CredentialBatch, Employee
from tests.builders import add_employee, audit_events
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.sendgrid import API_KEY as SENDGRID_KEY
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.slack import (
    ADMIN_ID,
    CHANNEL_ID,
    PRIVATE_CHANNEL_ID,
    SlackStandIn,
    check_view,
    dm_channel,
)


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    __hash__ = str.__hash__


ANY_TEXT = _AnyText()


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
    """Press "Review": "Preparing..." at once, then the confirmation (or a message) through views.update."""
    before = len(app.slack.calls_to("views.update"))
    answer = app.requests.submit(picker, values)
    assert answer.status == 200, answer.body
    assert answer.json()["response_action"] == "update"
    assert "Preparing the list" in json.dumps(answer.json()["view"])
    app.slack.wait_for_call("views.update", before + 1)
    return app.slack.last_view()


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
    ada = add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com", username="alovelace")
    add_employee(session, "1002", "Alan", "Turing", email=None, username="aturing")
    session.commit()

    picker = open_picker(app)
    options = app.requests.options("lovel").json()["options"]
    assert [o["value"] for o in options] == [str(ada.id)]
    chosen = [(o["value"], o["text"]["text"]) for o in options]

    confirm = review(app, picker, {ids.EMPLOYEES_ACTION: [*chosen, ("2", "Alan Turing")]})
    text = json.dumps(confirm)
    assert confirm["callback_id"] == ids.CONFIRM_VIEW
    assert "ada@example.com" in text and "alovelace" in text
    assert "Cannot be emailed (1)" in text and "Alan Turing" in text
    assert "can only be emailed now" in text and "replaces the old one" in text
    assert "`password`" in text

    # Slack keeps the view it was answered with; the admin presses "Send emails".
    sent = app.requests.submit(confirm)
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
    actions = [e.action for e in audit_events(app.ctx.sessions)]
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
    assert [e.action for e in audit_events(app.ctx.sessions)] == []


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

    refused = audit_events(app.ctx.sessions, "access.refused")
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


def send_all(app: RunningApp, picker: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Review then "Send emails"; returns the answer to the send."""
    confirm = review(app, picker, values)
    answer: dict[str, Any] = app.requests.submit(confirm).json()
    return answer


def all_slack_text(app: RunningApp) -> str:
    return json.dumps([call.args for call in app.slack.calls]) + json.dumps(list(app.slack.messages.values()))


def test_user_data_cannot_ping_or_format(mail_app: RunningApp, session: Session) -> None:
    app = mail_app
    add_employee(session, "1001", "<!channel>", "<@U123|x> & co", email="evil@example.com", username="evil")
    add_employee(session, "1002", "<!here>", "Nomail", email=None, username="nomail")
    session.commit()
    picker = open_picker(app, "1001 1002")
    confirm = review(app, picker, {})
    text = json.dumps(confirm)
    assert "&lt;!channel&gt;" in text and "&lt;@U123|x&gt; &amp; co" in text and "&lt;!here&gt;" in text
    assert "<!channel>" not in text and "<!here>" not in text and "<@U123" not in text
    app.requests.submit(confirm)
    channel, ts = batch_message(app)
    app.slack.wait_for(lambda: app.slack.thread(channel, ts), what="thread replies")
    posted = json.dumps(list(app.slack.messages.values()))
    assert "&lt;!channel&gt;" in posted
    assert "<!channel>" not in posted and "<!here>" not in posted and "<@U123" not in posted
    # The picker's options are plain_text, which Slack never interprets: no escaping needed there.
    option = app.requests.options("evil").json()["options"][0]
    assert option["text"]["type"] == "plain_text"


def test_a_second_submission_sends_nothing_more(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app = mail_app
    add_employee(session, "1001", email="ada@example.com")
    session.commit()
    confirm = review(app, open_picker(app, "1001"), {})
    updates = len(app.slack.calls_to("views.update"))
    with ThreadPoolExecutor(2) as pool:  # a double click: both arrive at once
        answers = list(pool.map(lambda _: app.requests.submit(confirm).json(), range(2)))
    titles = sorted(answer["view"]["title"]["text"] for answer in answers)
    assert "Sending started" in titles
    if titles == ["Sending started", "Sending started"]:  # both acked before either committed:
        app.slack.wait_for_call("views.update", updates + 1)  # the loser is corrected in the modal
        assert app.slack.last_view()["title"]["text"] == "Already sent"
    batch_message(app)
    again = app.requests.submit(confirm).json()  # and a retry later
    assert again["view"]["title"]["text"] == "Already sent"
    with app.ctx.sessions() as check:
        assert len(check.scalars(select(CredentialBatch)).all()) == 1
    assert len(sendgrid_standin.sent_to("ada@example.com")) == 2  # welcome + username, once


def test_pending_preselects_everyone_never_emailed(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    for number in ("1", "2", "3"):
        add_employee(session, number)
    add_employee(session, "4", active=False)
    session.commit()
    picker = open_picker(app, "pending")
    presets = picker["blocks"][2]["element"]
    assert [o["value"] for o in presets["initial_options"]] == [ids.PRESET_NEVER_EMAILED]
    confirm = review(app, picker, {})
    assert "Will be emailed (3)" in json.dumps(confirm)


def test_nothing_picked_is_an_error_under_the_picker(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "1")
    session.commit()
    answer = app.requests.submit(open_picker(app), {}).json()
    assert answer == {"response_action": "errors", "errors": {ids.EMPLOYEES_BLOCK: ANY_TEXT}}


def test_a_thousand_employees_stay_within_block_kit_limits(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    numbers = [f"{n:05d}" for n in range(1000)]
    for number in numbers:
        add_employee(session, number, "Ada", "Lovelace" + "x" * 40)
    add_employee(session, "99999", email=None)
    session.commit()
    picker = open_picker(app, " ".join([*numbers, "99999"]))  # too many for the picker itself
    assert app.slack.problems == []
    assert "initial_options" not in picker["blocks"][1]["element"]
    presets = picker["blocks"][2]["element"]
    assert presets["initial_options"][0]["value"] == ids.PRESET_FROM_COMMAND
    assert len(picker["private_metadata"]) < 200
    confirm = review(app, picker, {})
    assert check_view(confirm) == [] and app.slack.problems == []
    text = json.dumps(confirm)
    assert "Will be emailed (1,000)" in text and "more." in text and "Cannot be emailed (1)" in text


def failures_audited(app: RunningApp) -> list[dict[str, Any]]:
    return [event.details for event in audit_events(app.ctx.sessions, "slack.call_failed")]


def test_expired_trigger_tells_the_admin_and_is_audited(running_slack_app: RunningApp) -> None:
    app = running_slack_app
    app.slack.fail("views.open", "expired_trigger_id")
    assert app.requests.command().status == 200
    told = app.slack.wait_for(app.slack.responded, what="the answer through response_url")[0]
    assert told["response_type"] == "ephemeral"
    assert "less than 3 seconds" in told["text"] and "type the command again" in told["text"]
    assert failures_audited(app) == [{"method": "views.open", "error": "expired_trigger_id"}]
    assert app.slack.calls_to("chat.postEphemeral") == []


def test_the_command_answers_in_a_private_channel_the_bot_is_not_in(running_slack_app: RunningApp) -> None:
    """chat.postEphemeral cannot reach a private channel the bot is not in; the response_url can."""
    app = running_slack_app
    app.slack.fail("views.open", "expired_trigger_id")
    assert app.requests.command(channel_id=PRIVATE_CHANNEL_ID).status == 200
    told = app.slack.wait_for(app.slack.responded, what="the answer through response_url")[0]
    assert "type the command again" in told["text"]
    assert app.slack.calls_to("chat.postEphemeral") == [] and app.slack.calls_to("chat.postMessage") == []


def test_a_refused_response_url_falls_back_to_ephemeral_then_dm(running_slack_app: RunningApp) -> None:
    app = running_slack_app
    app.slack.fail("views.open", "expired_trigger_id")
    body = app.requests.command_body(channel_id=PRIVATE_CHANNEL_ID)
    body = body.replace("%2Fresponse%2FR", "%2Fresponse%2FX")  # a response_url Slack no longer serves
    assert app.requests.post(body).status == 200
    dm = app.slack.wait_for_call("chat.postMessage")[0]
    assert dm.args["channel"] == ADMIN_ID and "type the command again" in dm.args["text"]
    ephemeral = app.slack.calls_to("chat.postEphemeral")[0]
    assert ephemeral.args["channel"] == PRIVATE_CHANNEL_ID  # refused: the bot is not in it
    assert [(f["method"], f["error"][:8]) for f in failures_audited(app)] == [
        ("views.open", "expired_"),
        ("response_url", "HTTP 404"),
        ("chat.postEphemeral", "channel_"),
    ]


def test_rate_limited_calls_are_retried(running_slack_app: RunningApp) -> None:
    app = running_slack_app
    app.slack.fail("views.open", status=429, retry_after=1)
    assert app.requests.command().status == 200
    app.slack.wait_for_call("views.open", 2)
    assert app.slack.last_view()["callback_id"] == ids.PICKER_VIEW
    assert failures_audited(app) == []


def test_unusable_channel_moves_the_trail_to_a_dm(mail_app: RunningApp, session: Session) -> None:
    app = mail_app
    add_employee(session, "1001", email="ada@example.com")
    session.commit()
    before = len(app.slack.calls_to("views.open"))
    app.requests.command(text="1001", channel_id="CPRIVATE9")  # a channel the bot is not in
    app.slack.wait_for_call("views.open", before + 1)
    send_all(app, app.slack.last_view(), {})
    channel, ts = batch_message(app)  # the summary updated the message in place, in the DM
    assert channel == dm_channel(ADMIN_ID)
    message = app.slack.messages[(channel, ts)]
    assert "could not post in <#CPRIVATE9>" in json.dumps(message["blocks"])
    assert "*1 sent*" in message["text"]
    assert len(app.slack.calls_to("chat.update")) >= 1
    app.slack.wait_for(
        lambda: [m for m in app.slack.thread(channel, ts) if "Sent (1)" in m["text"]], what="the DM thread"
    )
    assert {"method": "chat.postMessage", "error": "channel_not_found"} in failures_audited(app)


def test_mail_failures_are_summarised_with_reasons(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app = mail_app
    add_employee(session, "1001", email="ada@example.com")
    bad = add_employee(session, "1002", "Alan", "Turing", email="alan@example.com")
    session.commit()
    sendgrid_standin.answer(400, to="alan@example.com", times=None)
    send_all(app, open_picker(app, "1001 1002"), {})
    channel, ts = batch_message(app)
    message = app.slack.messages[(channel, ts)]
    assert "*1 sent*" in message["text"] and "*1 failed*" in message["text"]
    assert "Failed: welcome email not sent" in message["text"]
    button = message["blocks"][-1]["elements"][0]
    assert button["action_id"] == ids.RETRY_FAILED_ACTION
    thread = app.slack.wait_for(lambda: "\n".join(m["text"] for m in app.slack.thread(channel, ts)))
    assert "Failed (1)" in thread and "alan@example.com" in thread

    # "Pick the failed again" reopens the picker with Alan preselected.
    before = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.RETRY_FAILED_ACTION, button["value"]).status == 200
    app.slack.wait_for_call("views.open", before + 1)
    picker = app.slack.last_view()
    assert [o["value"] for o in picker["blocks"][1]["element"]["initial_options"]] == [str(bad.id)]


def test_refused_api_key_stops_the_batch_with_one_clear_error(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app = mail_app
    for number in ("1", "2", "3"):
        add_employee(session, number)
    session.commit()
    sendgrid_standin.answer(401, times=None)
    send_all(app, open_picker(app, "1 2 3"), {})
    channel, ts = batch_message(app)
    text = app.slack.messages[(channel, ts)]["text"]
    assert "*0 sent*" in text and "Sending stopped:" in text
    assert sendgrid_standin.messages == []


def test_a_reviewed_selection_belongs_to_its_admin(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "1001")
    add_admin(session, "UOTHER001", "test")
    session.commit()
    confirm = review(app, open_picker(app, "1001"), {})
    for metadata in (confirm["private_metadata"], '{"selection": "1.forged"}', "garbage"):
        user = "UOTHER001" if metadata == confirm["private_metadata"] else ADMIN_ID
        answer = app.requests.submit({**confirm, "private_metadata": metadata}, user_id=user).json()
        assert "no longer valid" in json.dumps(answer["view"])
    with app.ctx.sessions() as check:
        assert check.scalars(select(CredentialBatch)).all() == []


def test_an_admin_removed_after_review_cannot_send(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "1001", email="ada@example.com")
    add_admin(session, "UREMOVED1", "test")
    session.commit()
    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.command(user_id="UREMOVED1", text="1001").status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    updated = len(app.slack.calls_to("views.update"))
    assert app.requests.submit(app.slack.last_view(), {}, user_id="UREMOVED1").status == 200
    app.slack.wait_for_call("views.update", updated + 1)
    confirm = app.slack.last_view()
    assert confirm["callback_id"] == ids.CONFIRM_VIEW

    remove_admin(session, "UREMOVED1", "test")  # well inside the admin cache's few seconds
    session.commit()
    answer = app.requests.submit(confirm, user_id="UREMOVED1").json()
    assert answer["view"]["title"]["text"] == "Not allowed"
    with app.ctx.sessions() as check:
        assert check.scalars(select(CredentialBatch)).all() == []
    assert [e.action for e in audit_events(app.ctx.sessions)][-1] == "access.refused"


def test_the_command_is_answered_before_the_modal_is_opened(running_slack_app: RunningApp) -> None:
    app = running_slack_app
    release = app.slack.hold("views.open")
    try:
        assert app.requests.command().status == 200  # answered while views.open is still waiting
        app.slack.wait_for_call("views.open")
        assert app.slack.views == {}
    finally:
        release.set()
    app.slack.wait_for(lambda: app.slack.views, what="the picker to be opened")


def test_audit_channel_setting_wins(
    settings: Settings, slack_standin: SlackStandIn, session: Session
) -> None:
    slack_standin.channels.add("CAUDIT001")
    add_employee(session, "1001")
    session.commit()
    for app in serve_app(
        slack_settings(settings, slack_standin, audit_channel_id="CAUDIT001"), slack_standin
    ):
        answer = send_all(app, open_picker(app, "1001"), {})
        assert "<#CAUDIT001>" in json.dumps(answer["view"])
        channel, _ = batch_message(app)
        assert channel == "CAUDIT001"


def test_an_unexpected_error_is_told_not_swallowed(
    running_slack_app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = running_slack_app

    def broken(*_: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr("handlers.commands.resolve_employees", broken)
    app.requests.command(text="1001")
    told = app.slack.wait_for(app.slack.responded, what="the answer through response_url")[0]
    assert "Something went wrong on credbot's side" in told["text"]
    assert "database on fire" not in told["text"]
    assert app.slack.calls_to("views.open") == []


def test_progress_updates_the_channel_message(
    mail_app: RunningApp, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mail_app
    monkeypatch.setattr("handlers.sending.PROGRESS_INTERVAL", 0.0)  # every delivery updates the message
    for number in ("1", "2", "3"):
        add_employee(session, number)
    session.commit()
    send_all(app, open_picker(app, "1 2 3"), {})
    _, ts = batch_message(app)
    texts = [call.args["text"] for call in app.slack.calls_to("chat.update") if call.args["ts"] == ts]
    assert any("of 3 done" in text for text in texts[:-1])
    assert "*3 sent*" in texts[-1]
    started = app.slack.calls_to("chat.postMessage")[0].args["text"]
    assert "emailing Self-Service credentials to *3* employees" in started


def test_an_address_changed_after_the_confirmation_is_skipped_not_mailed(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app = mail_app
    ada = add_employee(session, "1001", email="ada@example.com")
    add_employee(session, "1002", "Alan", "Turing", email="alan@example.com")
    session.commit()
    confirm = review(app, open_picker(app, "1001 1002"), {})
    assert "ada@example.com" in json.dumps(confirm)
    ada.email = "ada.new@example.com"  # an import between Review and Send
    session.commit()
    app.requests.submit(confirm)
    channel, ts = batch_message(app)
    text = app.slack.messages[(channel, ts)]["text"]
    assert "*1 sent*" in text and "*1 skipped*" in text
    assert "Skipped: address changed since the batch was confirmed (1)" in text
    assert [m["personalizations"][0]["to"][0]["email"] for m in sendgrid_standin.messages] == [
        "alan@example.com",
        "alan@example.com",
    ]


def test_a_resumed_batch_says_so_in_its_thread_and_ends_with_the_summary(
    mail_app: RunningApp, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    from bot.sending.jobs import resume_batch

    app = mail_app
    add_employee(session, "1001", email="ada@example.com")
    session.commit()
    batch_id = start_batch(
        app.ctx, [e.id for e in session.scalars(select(Employee))], "slack:" + ADMIN_ID, BatchSource.SLACK
    )
    with app.ctx.sessions.begin() as change:  # as a worker killed after posting the start would leave it
        change.get_one(CredentialBatch, batch_id).channel_id = CHANNEL_ID
    assert resume_batch(app.ctx, batch_id, "cli:tester")
    channel, ts = batch_message(app)
    assert "*1 sent*" in app.slack.messages[(channel, ts)]["text"]
    thread = "\n".join(m["text"] for m in app.slack.thread(channel, ts))
    assert f"Batch #{batch_id} resumed: the worker sending it stopped. 1 employee left" in thread
