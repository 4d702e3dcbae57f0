"""SendGrid as it really behaves: malformed and hostile Event Webhook posts, text from mail servers in
Slack, suppression lists, and how long events are kept."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot import jobs
from bot.clock import ManualClock
from bot.context import Context
from bot.delivery_events import Ignored, apply_events, prune_delivery_events
from bot.installation import identity
from bot.mail.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from bot.outside_text import MAX_OUTSIDE_TEXT, inert
from handlers import ids
from models import BatchSource, Delivery, DeliveryEvent, Employee
from tests.builders import add_employee
from tests.cli_helpers import RunCli
from tests.credentials_helpers import send_credentials, sendgrid_context, sendgrid_transport
from tests.slack_requests import RunningApp
from tests.standins.sendgrid import API_KEY as SENDGRID_KEY
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.sendgrid_webhook import EventWebhookSender
from tests.test_delivery_events import (  # noqa: F401 (fixture)
    send_from_slack,
    states,
    stored_events,
    webhook_app,
)
from tests.test_slack_flow import open_picker, review

PHISHING = (
    "550 5.1.1 Your mailbox was suspended. *Restore it now* at http://evil.example/reset or "
    "`www.evil.example` <https://evil.example/login|Reset your password> <!channel> _urgent_ ~x~ "
) + "padding " * 80


def post_raw(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def counts_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.getMessage().startswith("SendGrid events"))


# --- what the issue found: 500s ----------------------------------------------------------------------------


def test_malformed_events_are_skipped_one_by_one_and_the_good_ones_stored(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
    sendgrid_standin: SendGridStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each of these gave a 500 for the whole post (and lost the good events in it) before."""
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    send_from_slack(app, "1001")
    good = sendgrid_standin.events()
    base = {**good[1], "event": "bounce", "type": "bounce", "reason": "550 5.1.1 user unknown"}
    bad: list[Any] = [
        {**base, "sg_event_id": "b1", "credbot_delivery": "1" * 20},  # 20 digits: no INTEGER
        {**base, "sg_event_id": "b2", "credbot_batch": "²"},  # "²".isdigit() is True
        {**base, "sg_event_id": "b3", "credbot_delivery": "-1"},
        {**base, "sg_event_id": "x" * 500},
        {**base, "sg_event_id": "b5", "timestamp": "soon"},
        {**base, "sg_event_id": "b6", "timestamp": True},
        {**base, "sg_event_id": "b7", "timestamp": 1e300},
        {**base, "sg_event_id": "b8", "event": ["bounce"]},
        {**base, "sg_event_id": "b9", "reason": {"nested": "reason"}},
        {**base, "sg_event_id": "b10", "sg_message_id": 12},
        {**base, "sg_event_id": "b11", "extra": [[[[[["six deep"]]]]]]},
        "not an event",
        None,
        17,
    ]
    pieces = [json.dumps(event) for event in good[:2] + bad + good[2:]]
    pieces.insert(3, '{"event": "bounce", "x": ' + "[" * 5000 + "]" * 5000 + "}")  # 5,000 deep
    body = ("[" + ",".join(pieces) + "]").encode()
    with caplog.at_level(logging.INFO, logger="credbot.web"):
        assert sender.post(body=body).status == 200
    assert stored_events(app) == len(good) == 4
    assert states(app) == {"ada@example.com": "delivered"}
    assert f"{len(bad) + 1} malformed" in counts_logged(caplog)

    legacy = {k: v for k, v in base.items() if not k.startswith("credbot_")}
    with caplog.at_level(logging.INFO, logger="credbot.web"):
        assert (
            sender.post([{**legacy, "batch_id": "²", "delivery_id": "1", "sg_event_id": "l1"}]).status == 200
        )
    assert "1 for other mail" in counts_logged(caplog)  # other apps' args are theirs to shape


def test_malformed_headers_and_bodies_get_403_or_400_never_500(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
) -> None:
    app, sender = webhook_app
    body = b"[]"
    stamp = str(int(time.time()))
    good_signature = sender.sign(body, stamp)
    json_type = {"Content-Type": "application/json"}
    refused = [
        {TIMESTAMP_HEADER: "²"},  # unsigned, with the timestamp
        {TIMESTAMP_HEADER: "²", SIGNATURE_HEADER: good_signature},
        {TIMESTAMP_HEADER: "9" * 40, SIGNATURE_HEADER: good_signature},
        {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: "²"},
        {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"},  # base64, not DER
        {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: ""},
    ]
    assert [post_raw(sender.url, body, {**json_type, **headers}) for headers in refused] == [403] * len(
        refused
    )
    deep_object = b'{"a":' * 5000 + b"1" + b"}" * 5000
    deep_array = b"[" * 5000 + b"]" * 5000
    assert sender.post(body=deep_object).status == 400
    assert sender.post(body=deep_array).status == 200  # one element, too deep: skipped
    assert sender.post(body=b"\xff\xfe[]").status == 400
    assert sender.post(body=b"[1,2,").status == 400
    assert stored_events(app) == 0


# --- time ---------------------------------------------------------------------------------------------------


def sent_to_ada(context: Context, session: Session, standin: SendGridStandIn, clock: ManualClock) -> Context:
    ctx = sendgrid_context(context, standin)
    ctx = Context(settings=ctx.settings, sessions=ctx.sessions, clock=clock)
    ada = add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    send_credentials(ctx, [ada.id], "cli:test", BatchSource.CLI, transport=sendgrid_transport(ctx))
    return ctx


def test_an_event_dated_far_ahead_cannot_keep_a_delivery_bounced(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    clock = ManualClock()
    t0 = clock.now()
    ctx = sent_to_ada(context, session, sendgrid_standin, clock)
    events = sendgrid_standin.events(t0.timestamp())
    future = t0 + timedelta(days=365 * 50)
    bounces = [
        {
            **e,
            "event": "bounce",
            "type": "bounce",
            "timestamp": int(future.timestamp()),
            "sg_event_id": f"f{i}",
        }
        for i, e in enumerate(events)
        if e["event"] == "delivered"
    ]
    assert apply_events(ctx, bounces).stored == 2
    assert states_of(ctx) == ["bounced"]  # as of when it arrived
    clock.advance(60)
    delivered = sendgrid_standin.events((t0 + timedelta(seconds=59)).timestamp())
    assert apply_events(ctx, delivered).stored == 4
    assert states_of(ctx) == ["delivered"]


def states_of(ctx: Context) -> list[str | None]:
    with ctx.sessions() as s:
        return list(s.scalars(select(Delivery.mail_state).order_by(Delivery.id)))


def test_events_are_pruned_after_the_retention_and_deliveries_keep_their_state(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    clock = ManualClock()
    t0 = clock.now()
    ctx = sent_to_ada(context, session, sendgrid_standin, clock)
    sendgrid_standin.bounce("ada@example.com", "550 5.1.1 user unknown")
    assert apply_events(ctx, sendgrid_standin.events(t0.timestamp())).stored == 4
    every = jobs._schedules[prune_delivery_events.name].seconds
    assert isinstance(every, int | float) and every > 0  # scheduled on the workers

    clock.advance(89 * 86_400)
    prune_delivery_events(ctx)
    assert count_events(ctx) == 4

    clock.advance(2 * 86_400)
    prune_delivery_events(ctx)
    assert count_events(ctx) == 0
    assert states_of(ctx) == ["bounced"]
    with ctx.sessions() as s:
        assert s.scalars(select(Employee.bad_address_event)).one() == "bounced"

    late = [{**e, "event": "delivered", "sg_event_id": "late"} for e in sendgrid_standin.events()[:1]]
    result = apply_events(ctx, late)
    assert (result.stored, result.ignored[Ignored.TOO_OLD]) == (0, 1)
    assert states_of(ctx) == ["bounced"]


def count_events(ctx: Context) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(DeliveryEvent)) or 0


def test_old_custom_args_count_only_for_deliveries_sent_before_and_only_by_message_id(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    clock = ManualClock()
    t0 = clock.now()
    ctx = sent_to_ada(context, session, sendgrid_standin, clock)
    events = [
        {**{k: v for k, v in e.items() if not k.startswith("credbot_")}, "batch_id": "1", "delivery_id": "1"}
        for e in sendgrid_standin.events(t0.timestamp())
    ]
    assert apply_events(ctx, events).ignored[Ignored.OTHER_MAIL] == 4  # sent with the new args

    installed = identity(ctx.settings, ctx.sessions, ctx.clock).installed_at
    with ctx.sessions.begin() as s:  # as if sent before the upgrade
        s.execute(update(Delivery).values(created_at=installed - timedelta(days=1)))
    unknown = [
        {**e, "sg_message_id": "Unknown.filter0001", "sg_event_id": "u" + e["sg_event_id"]} for e in events
    ]
    missing = [{**e, "sg_message_id": None, "sg_event_id": "m" + e["sg_event_id"]} for e in events]
    assert apply_events(ctx, unknown + missing).stored == 0
    assert apply_events(ctx, events).stored == 4
    assert states_of(ctx) == ["delivered"]


def test_another_installation_with_its_own_instance_id_does_not_take_our_events(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    clock = ManualClock()
    t0 = clock.now()
    ours = sent_to_ada(context, session, sendgrid_standin, clock)
    theirs = Context(
        settings=ours.settings.model_copy(update={"credbot_instance": "hr-eu"}),
        sessions=ours.sessions,
        clock=clock,
    )
    events = sendgrid_standin.events(t0.timestamp())
    assert apply_events(theirs, events).ignored[Ignored.OTHER_INSTALL] == 4
    assert apply_events(ours, events).stored == 4


# --- text from outside, in Slack and the terminal -----------------------------------------------------------


def test_inert_defangs_links_and_markup_and_caps_the_length() -> None:
    text = inert(PHISHING)
    assert len(text) <= MAX_OUTSIDE_TEXT
    assert "http://" not in text and "https://" not in text and "evil.example" not in text
    assert "hxxp://evil[.]example/reset" in text and "www[.]evil[.]example" in text
    assert not set("*_~`") & set(text)
    assert inert("550 5.1.1 user unknown") == "550 5.1.1 user unknown"
    assert inert("line\nbreak\x1b[2K\u202eback") == "line break [2K back"
    assert (
        inert("<!channel> <https://a.example|b>") == "\u2039!channel\u203a \u2039hxxps://a[.]example|b\u203a"
    )
    assert inert("mailto:a@evil.example") == "mailto[:]a@evil[.]example"


def test_phishing_shaped_reasons_reach_slack_and_the_terminal_inert(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
    sendgrid_standin: SendGridStandIn,
    cli: RunCli,
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    batch_id, channel, ts = send_from_slack(app, "1001")
    sendgrid_standin.bounce("ada@example.com", PHISHING)
    assert sender.post(sendgrid_standin.events()).status == 200
    (message,) = app.slack.wait_for(
        lambda: [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]],
        what="the bounce in the thread",
    )
    blocks = message["blocks"] if isinstance(message["blocks"], list) else json.loads(message["blocks"])
    posted = json.dumps(message, ensure_ascii=False)
    for forbidden in ("http://", "https://", "evil.example", "<!channel>", "<https", "*Restore", "`www"):
        assert forbidden not in posted, forbidden
    (reason,) = blocks[0]["fields"]
    assert reason["type"] == "plain_text" and reason["emoji"] is False
    assert "hxxp://evil[.]example/reset" in reason["text"] and len(reason["text"]) <= 2 * MAX_OUTSIDE_TEXT
    assert "evil.example" not in blocks[0]["text"]["text"]  # credbot's own words stay mrkdwn

    listing = cli("deliveries", str(batch_id))
    assert "hxxp://evil[.]example" in listing.output and "http://evil.example" not in listing.output

    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.RESEND_ACTION, blocks[1]["elements"][1]["value"]).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    shown = json.dumps(app.slack.last_view(), ensure_ascii=False)
    assert "evil.example" not in shown and "hxxp://evil[.]example" in shown


# --- suppression lists --------------------------------------------------------------------------------------


def test_a_resend_after_the_mailbox_is_created_arrives_through_the_bounce_list(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
    sendgrid_standin: SendGridStandIn,
) -> None:
    app, sender = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    _, channel, ts = send_from_slack(app, "1001")
    sendgrid_standin.bounce("ada@example.com", "550 5.1.1 The email account does not exist")
    assert sender.post(sendgrid_standin.events()).status == 200
    assert "ada@example.com" in sendgrid_standin.suppressions["bounces"]
    (problem,) = app.slack.wait_for(
        lambda: [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]],
        what="the bounce in the thread",
    )
    sendgrid_standin.create_mailbox("ada@example.com")  # IT creates the mailbox the next morning

    blocks = problem["blocks"] if isinstance(problem["blocks"], list) else json.loads(problem["blocks"])
    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.RESEND_ACTION, blocks[1]["elements"][1]["value"]).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    confirm = app.slack.last_view()
    shown = json.dumps(confirm)
    assert "on SendGrid's bounce list since" in shown and "bypass it this once" in shown
    assert app.requests.submit(confirm).status == 200  # "Send emails"

    app.slack.wait_for(lambda: len(sendgrid_standin.sent_to("ada@example.com")) == 4, what="both emails")
    resent = sendgrid_standin.sent_to("ada@example.com")[2:]  # the welcome and username emails
    assert all(m["mail_settings"] == {"bypass_bounce_management": {"enable": True}} for m in resent)
    resent_ids = {m["message_id"] for m in resent}
    later = time.time() + 60  # the mailbox answers a minute later
    events = [e for e in sendgrid_standin.events(later) if e["sg_message_id"].split(".")[0] in resent_ids]
    fates = [e["event"] for e in events if e["event"] != "processed"]
    assert fates == ["delivered", "delivered"]  # not dropped as "Bounced Address"
    app.slack.wait_for(lambda: _newest_sent(app), what="the resend recorded")
    assert sender.post(events).status == 200
    with app.ctx.sessions() as s:
        newest = s.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(1)).one()
        assert (newest.mail_state, newest.bypass_bounce_list) == ("delivered", True)
        assert s.scalars(select(Employee.bad_address)).one() is None  # the flag is cleared


def _newest_sent(app: RunningApp) -> bool:
    with app.ctx.sessions() as s:
        status = s.scalar(select(Delivery.status).order_by(Delivery.id.desc()).limit(1))
    return status == "sent"


def test_without_the_bypass_sendgrid_drops_mail_to_a_bounced_address(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    """The stand-in models the list: a plain send to an address that bounced is dropped, as SendGrid does."""
    clock = ManualClock()
    ctx = sent_to_ada(context, session, sendgrid_standin, clock)
    sendgrid_standin.bounce("ada@example.com", "550 5.1.1 user unknown")
    sendgrid_standin.events()
    sendgrid_standin.create_mailbox("ada@example.com")
    ada_id = session.scalars(select(Employee.id)).one()
    send_credentials(ctx, [ada_id], "cli:test", BatchSource.CLI, transport=sendgrid_transport(ctx))
    finals = [e for e in sendgrid_standin.events() if e["event"] != "processed"]
    assert [e.get("reason") for e in finals[-2:]] == ["Bounced Address", "Bounced Address"]


def test_the_confirmation_says_when_the_key_may_not_read_the_suppression_lists(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
    sendgrid_standin: SendGridStandIn,
    cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    add_employee(session, "1002", "Alan", "Turing", email="alan@example.com")
    session.commit()
    sendgrid_standin.suppress("alan@example.com", "spam_reports")
    monkeypatch.setenv("SENDGRID_API_KEY", SENDGRID_KEY)
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid_standin.url)
    preview = cli("credentials", "send", "1001", "1002")  # no --yes, no input: shows, sends nothing
    assert "on SendGrid's spam report list since" in preview.output

    sendgrid_standin.scopes = {"mail.send"}
    confirm = review(app, open_picker(app, "1001"), {})
    assert confirm["callback_id"] == ids.CONFIRM_VIEW
    assert "lacks the Suppressions permission" in json.dumps(confirm)
    assert sendgrid_standin.suppression_calls  # it asked, and was refused


def test_an_event_before_its_message_id_is_recorded_counts_only_while_the_delivery_is_in_flight(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    clock = ManualClock()
    t0 = clock.now()
    ctx = sent_to_ada(context, session, sendgrid_standin, clock)
    events = sendgrid_standin.events(t0.timestamp())
    early = [
        {**e, "sg_message_id": "NotYetKept.filter0001", "sg_event_id": "e" + e["sg_event_id"]} for e in events
    ]
    assert apply_events(ctx, early).stored == 0  # sent: its ids are recorded, and these are not them

    with ctx.sessions.begin() as s:  # as between the mail API's answer and the ending's commit
        s.execute(
            update(Delivery).values(status="sending", welcome_message_id=None, username_message_id=None)
        )
    assert apply_events(ctx, early).stored == len(early)
