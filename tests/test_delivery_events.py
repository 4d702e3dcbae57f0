"""SendGrid's Event Webhook: signed posts to the real app; events, states, Slack, CLI, confirmations."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import jobs
from bot.context import Context
from bot.delivery_events import EmailState, MailState, apply_events, delivery_state, email_state, plain_reason
from bot.mail.webhook import WebhookKeyError
from bot.passwords import verify_password
from bot.sending.recipients import preview
from bot.settings import Settings
from credbot.web import create_web_app
from handlers import ids
from models import Account, BatchSource, CredentialBatch, Delivery, DeliveryEvent, Employee
from tests.builders import add_employee, address_rule, audit_events, present
from tests.cli_helpers import RunCli
from tests.credentials_helpers import (
    password_in,
    send_credentials,
    sendgrid_context,
    sendgrid_transport,
    standin_text,
)
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.sendgrid import API_KEY as SENDGRID_KEY
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.sendgrid_webhook import EventWebhookSender
from tests.standins.slack import ADMIN_ID, SlackStandIn
from tests.test_slack_flow import batch_message, open_picker, review

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


# --- the state machine, without a database ------------------------------------------------------------------


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(T0.timestamp() + seconds, UTC)


def test_any_order_and_duplicates_end_in_the_same_state() -> None:
    histories = [
        ([("processed", at(0)), ("deferred", at(5)), ("delivered", at(60))], MailState.DELIVERED),
        ([("processed", at(0)), ("bounce", at(2))], MailState.BOUNCED),
        ([("processed", at(0)), ("delivered", at(1)), ("bounce", at(90))], MailState.BOUNCED),  # async bounce
        ([("processed", at(0)), ("delivered", at(1)), ("spamreport", at(500))], MailState.SPAM_REPORT),
        ([("processed", at(0)), ("deferred", at(1)), ("deferred", at(300))], MailState.DEFERRED),
        ([("dropped", at(0))], MailState.DROPPED),
        ([("processed", at(0)), ("blocked", at(3))], MailState.BLOCKED),
    ]
    for history, expected in histories:
        events = [(event, when, None, None) for event, when in history]
        results = {email_state(list(order)) for order in itertools.permutations(events + events[:1])}
        assert {result.state for result in results if result} == {expected}, history
        assert len(results) == 1


def test_a_delivery_needs_both_emails_delivered_and_shows_any_problem() -> None:
    delivered = EmailState(MailState.DELIVERED, at(1), "delivered", None, None)
    waiting = EmailState(MailState.WAITING, at(0), "processed", None, None)
    bounced = EmailState(MailState.BOUNCED, at(2), "bounce", "550 5.1.1 no such user", "5.1.1")
    assert present(delivery_state({"welcome": delivered}, username_sent=True)).state == MailState.WAITING
    assert present(delivery_state({"welcome": delivered}, username_sent=False)).state == MailState.DELIVERED
    both = {"welcome": delivered, "username": delivered}
    assert present(delivery_state(both, username_sent=True)).state == MailState.DELIVERED
    assert (
        present(delivery_state({"welcome": delivered, "username": bounced}, True)).state == MailState.BOUNCED
    )
    assert (
        present(delivery_state({"welcome": waiting, "username": delivered}, True)).state == MailState.WAITING
    )
    assert delivery_state({}, True) is None
    assert plain_reason(bounced) == "the mailbox does not exist (550 5.1.1 no such user)"
    dropped = EmailState(MailState.DROPPED, at(0), "dropped", "Bounced Address", None)
    assert plain_reason(dropped) == "this address bounced before, so SendGrid no longer sends to it"


# --- the app over HTTP --------------------------------------------------------------------------------------


@pytest.fixture
def webhook_app(
    settings: Settings, slack_standin: SlackStandIn, sendgrid_standin: SendGridStandIn
) -> Iterator[tuple[RunningApp, EventWebhookSender]]:
    """The real app with mail to the SendGrid stand-in and the signed Event Webhook switched on."""
    sender = EventWebhookSender("")
    update = {
        "sendgrid_api_key": SecretStr(SENDGRID_KEY),
        "sendgrid_api_host": sendgrid_standin.url,
        "sendgrid_webhook_public_key": sender.public_key,
    }
    for app in serve_app(slack_settings(settings, slack_standin, **update), slack_standin):
        sender.url = app.url.replace("/slack/events", "/sendgrid/events")
        yield app, sender


def send_from_slack(app: RunningApp, keys: str) -> tuple[int, str, str]:
    """Email the employees `keys` through the Slack flow; (batch id, channel, ts of the summary)."""
    picker = open_picker(app, keys)
    confirm = review(app, picker, {})
    assert app.requests.submit(confirm).status == 200
    channel, ts = batch_message(app)
    with app.ctx.sessions() as session:
        batch_id = present(session.scalar(select(func.max(CredentialBatch.id))))
    app.slack.wait_for(lambda: batch_summary_stored(app, batch_id), what="the summary to be stored")
    return batch_id, channel, ts


def batch_summary_stored(app: RunningApp, batch_id: int) -> bool:
    with app.ctx.sessions() as session:
        return (
            session.scalar(select(CredentialBatch.slack_summary).where(CredentialBatch.id == batch_id))
            is not None
        )


def stored_events(app: RunningApp) -> int:
    with app.ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(DeliveryEvent)) or 0


def states(app: RunningApp) -> dict[str, str | None]:
    with app.ctx.sessions() as session:
        rows = session.execute(select(Delivery.email_address, Delivery.mail_state))
        return {present(address): state for address, state in rows}


def delivery_text(app: RunningApp, channel: str, ts: str) -> str:
    """The summary message's current delivery line."""
    message = app.slack.messages[(channel, ts)]
    blocks = message["blocks"] if isinstance(message["blocks"], list) else json.loads(message["blocks"])
    lines = [
        b["elements"][0]["text"] for b in blocks if b["type"] == "context" and "Delivery:" in json.dumps(b)
    ]
    return lines[-1] if lines else ""


def test_only_signed_fresh_posts_are_accepted(
    webhook_app: tuple[RunningApp, EventWebhookSender], session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    send_from_slack(app, "1001")
    events = sendgrid_standin.events()
    other_key = ec.generate_private_key(ec.SECP256R1())

    refused = [
        sender.post(events, signed=False),
        sender.post(events, tamper=True),
        sender.post(events, key=other_key),
        sender.post(events, timestamp=int(time.time()) - 26 * 3600),  # older than SendGrid retries
        sender.post(events, timestamp=int(time.time()) + 3600),
        sender.post(events, signature="not base64!"),
    ]
    assert [answer.status for answer in refused] == [403] * 6
    assert stored_events(app) == 0 and set(states(app).values()) == {None}

    assert (
        sender.post(events, timestamp=int(time.time()) - 23 * 3600).status == 200
    )  # a retry after an outage
    assert stored_events(app) == len(events) == 4  # processed + delivered, for both emails
    assert states(app) == {"ada@example.com": "delivered"}


def test_without_the_key_the_endpoint_is_404_and_says_why_once(
    running_slack_app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    sender = EventWebhookSender(running_slack_app.url.replace("/slack/events", "/sendgrid/events"))
    with caplog.at_level(logging.WARNING):
        assert [sender.post([]).status for _ in range(3)] == [404, 404, 404]
    assert sum("SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in r.getMessage() for r in caplog.records) == 1


def test_oversized_and_malformed_bodies(webhook_app: tuple[RunningApp, EventWebhookSender]) -> None:
    app, sender = webhook_app
    assert sender.post(body=b"[" + b" " * (5 * 1024 * 1024) + b"]").status == 413
    assert sender.post(body=b'[{"event": "delivered",').status == 400
    assert sender.post(body=b'{"event": "delivered"}').status == 400  # an object, not an array
    assert sender.post(body=b"[]").status == 200
    assert stored_events(app) == 0


def test_duplicates_change_nothing_and_out_of_order_events_end_right(
    webhook_app: tuple[RunningApp, EventWebhookSender],
    session: Session,
    sendgrid_standin: SendGridStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    add_employee(session, "1002", "Alan", "Turing", email="alan@example.com")
    session.commit()
    send_from_slack(app, "1001 1002")
    sendgrid_standin.bounce(
        "alan@example.com", "550 5.1.1 The email account that you tried to reach does not exist"
    )
    events = sendgrid_standin.events()
    finals = [e for e in events if e["event"] != "processed"]
    processed = [e for e in events if e["event"] == "processed"]

    with caplog.at_level(logging.INFO, logger="credbot.web"):
        assert sender.post(finals).status == 200  # delivered and bounced before processed
        assert sender.post(processed).status == 200
    assert states(app) == {"ada@example.com": "delivered", "alan@example.com": "bounced"}
    before = stored_events(app)
    with app.ctx.sessions() as s:
        snapshot = s.execute(
            select(Delivery.id, Delivery.mail_state, Delivery.mail_state_at, Delivery.mail_reason).order_by(
                Delivery.id
            )
        ).all()

    assert sender.post(list(reversed(events))).status == 200  # SendGrid retried the lot
    assert sender.post(events[:3] + events[:3]).status == 200  # and duplicates within one post
    assert stored_events(app) == before == len(events)
    with app.ctx.sessions() as s:
        assert (
            s.execute(
                select(
                    Delivery.id, Delivery.mail_state, Delivery.mail_state_at, Delivery.mail_reason
                ).order_by(Delivery.id)
            ).all()
            == snapshot
        )

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SendGrid events: 4 received, 4 stored" in logged
    assert "example.com" not in logged and "does not exist" not in logged  # counts only


def test_foreign_events_and_another_installs_events_change_nothing(
    webhook_app: tuple[RunningApp, EventWebhookSender],
    session: Session,
    sendgrid_standin: SendGridStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's red-team post: another app's bounce naming credbot's batch and delivery with generic
    custom args, credbot-looking args about a message credbot never sent, and a second credbot install
    sharing the SendGrid account. Signed and posted, none of them counts."""
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    batch_id, channel, ts = send_from_slack(app, "1001")
    events = sendgrid_standin.events()
    ours = events[0]
    bounce = {
        **ours,
        "event": "bounce",
        "type": "bounce",
        "reason": "550 5.1.1 user unknown",
        "status": "5.1.1",
    }
    strangers = [
        {  # another app's newsletter: generic args that happen to name credbot's batch and delivery
            "email": "someone@example.org",
            "event": "bounce",
            "type": "bounce",
            "reason": "550 5.1.1 user unknown",
            "timestamp": int(time.time()),
            "sg_event_id": "foreign-1",
            "sg_message_id": "NotCredbotsMessage.filter0001.1.2.0",
            "category": ["newsletter"],
            "batch_id": str(batch_id),
            "delivery_id": ours["credbot_delivery"],
        },
        {**bounce, "sg_event_id": "foreign-2", "sg_message_id": "NeverSent.filter0001.1.2.0"},
        {**bounce, "sg_event_id": "foreign-3", "credbot_instance": "another-install"},
        {**bounce, "sg_event_id": "foreign-4", "credbot_batch": str(batch_id + 1)},
        {"email": "x@example.org", "event": "delivered", "timestamp": 1, "sg_event_id": "foreign-5"},
        {**ours, "sg_event_id": "foreign-6", "event": "open"},
    ]
    with caplog.at_level(logging.INFO, logger="credbot.web"):
        assert sender.post(strangers).status == 200
    assert stored_events(app) == 0 and states(app) == {"ada@example.com": None}
    with app.ctx.sessions() as s:
        ada = s.scalars(select(Employee).where(Employee.employee_number == "1001")).one()
        batch = s.get_one(CredentialBatch, batch_id)
        assert ada.bad_address is None
        assert batch.delivery_update_due_at is None  # nothing new to show: no Slack update scheduled
    assert not [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert (
        "6 received, 0 stored, 0 duplicates, 4 for other mail, 1 from another install, 1 not tracked, "
        "0 malformed, 0 about deliveries past retention"
    ) in logged

    assert sender.post(events).status == 200  # credbot's own events still count
    assert states(app) == {"ada@example.com": "delivered"}


def test_hr_names_reach_sendgrid_in_a_form_it_delivers(
    webhook_app: tuple[RunningApp, EventWebhookSender], session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Robert", "Downey, Jr.", email="rdj@example.com")
    add_employee(session, "1002", "Semi Colon;", "Name", email="semi@example.com")
    add_employee(session, "1003", "Tab\tand", "New\nLine", email="tab@example.com")
    session.commit()
    _, channel, ts = send_from_slack(app, "1001 1002 1003")
    assert sendgrid_standin.dropped == [] and len(sendgrid_standin.messages) == 6
    assert sender.post(sendgrid_standin.events()).status == 200
    app.slack.wait_for(lambda: "3 delivered" in delivery_text(app, channel, ts), what="3 delivered")
    assert set(states(app).values()) == {"delivered"}


def test_a_bounce_reaches_the_thread_and_fix_address_resends_to_the_new_address(
    webhook_app: tuple[RunningApp, EventWebhookSender], session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    add_employee(session, "1002", "Alan <!channel>", "Turing", email="alan@exmaple.com", username="aturing")
    session.commit()
    _, channel, ts = send_from_slack(app, "1001 1002")
    assert "0 delivered · 0 bounced · 0 dropped · 2 waiting" in delivery_text(app, channel, ts)
    old_password = password_in(standin_text(sendgrid_standin, "alan@exmaple.com", "credbot-welcome"))
    sendgrid_standin.bounce("alan@exmaple.com", "550 5.1.1 <alan@exmaple.com>: Recipient address rejected")
    assert sender.post(sendgrid_standin.events()).status == 200

    app.slack.wait_for(
        lambda: "1 delivered · 1 bounced · 0 dropped · 0 waiting" in delivery_text(app, channel, ts),
        what="the delivery line",
    )
    problem = app.slack.wait_for(
        lambda: [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]],
        what="the bounce in the thread",
    )
    assert len(problem) == 1
    text = problem[0]["text"]
    assert "*Alan &lt;!channel&gt; Turing* (1002)" in text and "<!channel>" not in text
    assert "bounced. Why: the mailbox does not exist" in text
    blocks = (
        problem[0]["blocks"] if isinstance(problem[0]["blocks"], list) else json.loads(problem[0]["blocks"])
    )
    buttons = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert set(buttons) == {ids.FIX_ADDRESS_ACTION, ids.RESEND_ACTION}
    assert buttons[ids.FIX_ADDRESS_ACTION]["text"]["text"] == "Fix address and resend"

    # The flag is on the employee, for later confirmations.
    with app.ctx.sessions() as s:
        alan = s.scalars(select(Employee).where(Employee.employee_number == "1002")).one()
        assert (alan.bad_address, alan.bad_address_event) == ("alan@exmaple.com", "bounced")

    # A repeated post of the same events posts nothing more in the thread.
    assert sender.post(sendgrid_standin.events()).status == 200
    time.sleep(0.5)

    # A non-admin cannot use the button.
    assert (
        app.requests.block_action(
            ids.FIX_ADDRESS_ACTION, buttons[ids.FIX_ADDRESS_ACTION]["value"], "UOTHER01"
        ).status
        == 200
    )
    app.slack.wait_for(
        lambda: any(
            c.args.get("user") == "UOTHER01" or c.args.get("channel") == "UOTHER01"
            for c in app.slack.calls_to("chat.postEphemeral") + app.slack.calls_to("chat.postMessage")
        ),
        what="the refusal",
    )

    # The admin fixes the address: modal, invalid input refused, then the normal confirmation.
    opened = len(app.slack.calls_to("views.open"))
    assert (
        app.requests.block_action(ids.FIX_ADDRESS_ACTION, buttons[ids.FIX_ADDRESS_ACTION]["value"]).status
        == 200
    )
    app.slack.wait_for_call("views.open", opened + 1)
    modal = app.slack.last_view()
    assert modal["callback_id"] == ids.FIX_ADDRESS_VIEW
    bad = app.requests.submit(modal, {ids.ADDRESS_ACTION: "alan at example"})
    assert bad.json()["response_action"] == "errors" and ids.ADDRESS_BLOCK in bad.json()["errors"]
    taken = app.requests.submit(modal, {ids.ADDRESS_ACTION: "ADA@example.com"})  # employee 1001's
    assert taken.json()["response_action"] == "errors"
    assert taken.json()["errors"][ids.ADDRESS_BLOCK] == (
        "Employee 1001 already has this address; each active employee needs their own"
    )
    answer = app.requests.submit(modal, {ids.ADDRESS_ACTION: "alan@example.com"})
    confirm = {**answer.json()["view"], "id": modal["id"]}  # Slack keeps the view's id on update
    assert answer.json()["response_action"] == "update" and confirm["callback_id"] == ids.CONFIRM_VIEW
    shown = json.dumps(confirm)
    assert "alan@example.com" in shown and "can only be emailed now" in shown and "bounced on" not in shown
    changes = audit_events(app.ctx.sessions, "employee.address_changed")
    assert [(c.actor, c.details["old_address"], c.details["new_address"]) for c in changes] == [
        (f"slack:{ADMIN_ID}", "alan@exmaple.com", "alan@example.com")
    ]

    assert app.requests.submit(confirm).status == 200  # "Send emails"
    app.slack.wait_for(lambda: sendgrid_standin.sent_to("alan@example.com"), what="mail to the new address")
    app.slack.wait_for(
        lambda: (
            len(
                [
                    m
                    for m in app.slack.messages.values()
                    if "emailed Self-Service credentials (batch" in m.get("text", "")
                ]
            )
            == 2
        ),
        what="the new batch's summary",
    )
    new_password = password_in(standin_text(sendgrid_standin, "alan@example.com", "credbot-welcome"))
    with app.ctx.sessions() as s:
        account = s.scalars(select(Account).where(Account.username == "aturing")).one()
        assert verify_password(new_password, account.password_hash)
        assert not verify_password(old_password, account.password_hash)
    problems = [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]]
    assert len(problems) == 1
    assert app.slack.problems == []


def test_resend_and_later_confirmations_show_the_flag(
    webhook_app: tuple[RunningApp, EventWebhookSender],
    session: Session,
    sendgrid_standin: SendGridStandIn,
    cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, sender = webhook_app
    for name in ("SENDGRID_API_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY", "SENDGRID_API_HOST"):
        value = getattr(app.ctx.settings, name.lower())
        monkeypatch.setenv(name, value.get_secret_value() if hasattr(value, "get_secret_value") else value)
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    batch_id, channel, ts = send_from_slack(app, "1001")
    for event in sendgrid_standin.events():
        if event["event"] == "delivered":
            event.update(event="dropped", reason="Bounced Address")
        sender.post([event])
    message = app.slack.wait_for(
        lambda: [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]],
        what="the drop in the thread",
    )[0]
    assert "was dropped by SendGrid. Why: this address bounced before" in message["text"]

    opened = len(app.slack.calls_to("views.open"))
    delivery_id = message["blocks"][1]["elements"][1]["value"] if isinstance(message["blocks"], list) else ""
    assert app.requests.block_action(ids.RESEND_ACTION, delivery_id).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    confirm = app.slack.last_view()
    assert confirm["callback_id"] == ids.CONFIRM_VIEW
    day = datetime.now(UTC)
    assert f"dropped on {day:%-d %b %Y}: this address bounced before" in json.dumps(confirm)
    assert "bounced or were dropped before" in json.dumps(confirm)

    preview = cli("credentials", "send", "1001")  # no --yes, no input: shows the list, sends nothing
    assert "ADDRESS WARNING" in preview.output and "dropped on" in preview.output

    listing = cli("deliveries", str(batch_id))
    assert listing.exit_code == 0, listing.output
    assert "ada@example.com" in listing.output and "dropped" in listing.output
    assert f"Batch {batch_id}: 0 delivered · 0 bounced · 1 dropped · 0 waiting." in listing.output
    report = cli("report")
    assert "0 delivered · 0 bounced · 1 dropped · 0 waiting" in report.output
    assert cli("deliveries", "999").exit_code != 0


def test_the_summary_is_updated_a_few_times_whatever_the_event_rate(
    webhook_app: tuple[RunningApp, EventWebhookSender], session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app, sender = webhook_app
    for number in range(1, 21):
        add_employee(session, str(1000 + number))
    session.commit()
    _, channel, ts = send_from_slack(app, " ".join(str(1000 + n) for n in range(1, 21)))
    before = len([c for c in app.slack.calls_to("chat.update") if c.args.get("ts") == ts])
    started = time.monotonic()
    for event in sendgrid_standin.events():  # one POST per event, as fast as they go
        assert sender.post([event]).status == 200
    app.slack.wait_for(
        lambda: "20 delivered" in delivery_text(app, channel, ts), timeout=20, what="20 delivered"
    )
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    updates = len([c for c in app.slack.calls_to("chat.update") if c.args.get("ts") == ts]) - before
    assert 1 <= updates <= elapsed / 3 + 2
    assert "20 delivered · 0 bounced · 0 dropped · 0 waiting" in delivery_text(app, channel, ts)


def test_the_slack_update_runs_as_a_job_through_redis(
    webhook_app: tuple[RunningApp, EventWebhookSender],
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
) -> None:
    app, sender = webhook_app
    jobs.configure(app.ctx, redis_url=redis_server_url, namespace=redis_namespace, in_process=True)
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    _, channel, ts = send_from_slack(app, "1001")
    assert sender.post(sendgrid_standin.events()).status == 200
    app.slack.wait_for(lambda: "1 delivered" in delivery_text(app, channel, ts), what="the job's update")
    assert jobs.redis_client() is not None


def test_concurrent_posts_about_the_same_deliveries_end_right(
    webhook_app: tuple[RunningApp, EventWebhookSender], session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    """SendGrid posts in parallel: one event per POST, all at once, in any order."""
    app, sender = webhook_app
    for number in range(1, 6):
        add_employee(session, str(1000 + number))
    session.commit()
    send_from_slack(app, " ".join(str(1000 + n) for n in range(1, 6)))
    sendgrid_standin.bounce("e1003@example.com", "550 5.2.2 mailbox full")
    events = sendgrid_standin.events()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda event: sender.post([event]).status, reversed(events)))
    assert answers == [200] * len(events)
    assert stored_events(app) == len(events)
    assert states(app) == {
        **{f"e{1000 + n}@example.com": "delivered" for n in (1, 2, 4, 5)},
        "e1003@example.com": "bounced",
    }


@pytest.mark.parametrize(
    "key", ["not a key", EventWebhookSender("").public_key[:40]], ids=["not-a-key", "truncated-key"]
)
def test_a_malformed_key_stops_the_app_at_start_and_names_the_setting(context: Context, key: str) -> None:
    settings = context.settings.model_copy(update={"sendgrid_webhook_public_key": key})
    with pytest.raises(WebhookKeyError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        create_web_app(Context(settings=settings, sessions=context.sessions))


def test_a_thread_post_that_failed_is_posted_with_the_next_update(
    webhook_app: tuple[RunningApp, EventWebhookSender], session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    add_employee(session, "1002", "Alan", "Turing", email="alan@example.com")
    session.commit()
    _, channel, ts = send_from_slack(app, "1001 1002")
    sendgrid_standin.bounce("ada@example.com", "550 5.1.1 user unknown")
    events = sendgrid_standin.events()
    # The batch's own thread reply (who was sent) may follow the stored summary: the failure below is
    # for the bounce's reply, not that one.
    app.slack.wait_for(lambda: app.slack.thread(channel, ts), what="the batch's thread reply")
    app.slack.fail("chat.postMessage", "internal_error", when=lambda args: args.get("thread_ts") == ts)
    sender.post([e for e in events if e["email"] == "ada@example.com"])
    app.slack.wait_for(lambda: "1 bounced" in delivery_text(app, channel, ts), what="the bounce counted")
    app.slack.wait_for(lambda: not app.slack._failures[-1].remaining, what="the failed thread post")
    assert not [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]]

    sender.post([e for e in events if e["email"] == "alan@example.com"])  # the next update
    posted = app.slack.wait_for(
        lambda: [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]],
        what="the bounce posted again",
    )
    assert len(posted) == 1 and "Ada Lovelace" in posted[0]["text"]


def test_a_later_delivery_to_the_flagged_address_clears_the_flag(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    ctx = sendgrid_context(context, sendgrid_standin)
    ada = add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    sendgrid_standin.bounce("ada@example.com", "452 4.2.2 mailbox full", status="5.2.2")
    send_credentials(ctx, [ada.id], "cli:test", BatchSource.CLI, transport=sendgrid_transport(ctx))
    assert apply_events(ctx, sendgrid_standin.events(time.time() - 60)).stored == 4
    session.expire_all()
    assert (ada.bad_address, ada.bad_address_event) == ("ada@example.com", "bounced")
    assert present(ada.bad_address_reason).startswith("the mailbox is full")
    (recipient,) = preview(session, [ada.id], address_rule())
    assert present(recipient.address_warning).startswith("bounced on ")

    sendgrid_standin.create_mailbox("ada@example.com")  # the mailbox was emptied: delivered now
    sendgrid_standin.suppressions["bounces"].clear()  # and taken off SendGrid's bounce list
    sendgrid_standin.messages.clear()
    send_credentials(ctx, [ada.id], "cli:test", BatchSource.CLI, transport=sendgrid_transport(ctx))
    apply_events(ctx, sendgrid_standin.events())
    session.expire_all()
    assert ada.bad_address is None and preview(session, [ada.id], address_rule())[0].address_warning is None
