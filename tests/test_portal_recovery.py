"""Self-service recovery: the portal's request page, approval requests for invited accounts (decided in
Slack), reset links for active ones, the same answer for everyone, the limits and the audit."""

from __future__ import annotations

import email
import json
import re
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bot import jobs
from bot.clock import ManualClock
from bot.context import Context
from bot.passwords import verify_password
from bot.portal import recovery
from bot.portal.client import Client
from bot.portal.recovery import RECOVERY_TTL, RESET_LINK_TTL, DecisionRefused, RecoveryOutcome
from bot.settings import Settings
from bot.slack_app import make_web_client
from handlers import ids
from handlers.recovery import post_cards
from models import Account, AccountStatus, RecoveryRequest, RecoveryStatus, SetupLink, utcnow
from tests.builders import TEMP_PASSWORD, add_person, audit_events, present
from tests.credentials_helpers import body_text, sendgrid_context
from tests.portal_helpers import GOOD_PASSWORD, Browser, get_account, make_portal_app
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.slack import ADMIN_ID, SlackStandIn

HOSTILE_AGENT = "Mozilla/5.0 <!channel> <script>alert(1)</script> *bold* <@U0ADMIN01>"
AUDIT_CHANNEL = "CAUDIT001"


def invited(ctx: Context, **fields: Any) -> int:
    """An invited account emailed two days ago whose temporary password has expired; its account id."""
    person = add_person(
        ctx,
        expires_in=timedelta(hours=-1),
        credentials_emailed_at=utcnow() - timedelta(days=2),
        credentials_emailed_by="slack:U0ADMIN01",
        **fields,
    )
    return person.account_id


def active(ctx: Context, **fields: Any) -> int:
    person = add_person(
        ctx,
        username="bsmith",
        first_name="Bob",
        last_name="Smith",
        email="bob.smith@example.com",
        password=GOOD_PASSWORD,
        must_change=False,
        status=AccountStatus.ACTIVE,
        **fields,
    )
    return person.account_id


def outbox(ctx: Context, category: str) -> list[EmailMessage]:
    directory = Path(ctx.settings.outbox_dir)
    found = []
    for path in sorted(directory.glob("*.eml")) if directory.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        if message["X-Credbot-Category"] == category:
            found.append(message)
    return found


def reset_url(message: EmailMessage) -> str:
    text = body_text(message)
    match = re.search(r"(http\S+/portal/setup/\S+)", text)
    assert match, text
    return match.group(1)


def recovery_actions(ctx: Context) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (row.action, row.details.get("outcome", ""), row.details)
        for row in audit_events(ctx.sessions)
        if row.action.startswith(("portal.recovery", "recovery.", "portal.reset"))
    ]


# --- The service -----------------------------------------------------------------------------------------


def test_an_invited_account_gets_one_pending_request_that_expires_after_a_day(context: Context) -> None:
    account_id = invited(context)
    client = Client("198.51.100.4", "Firefox")
    now = utcnow()
    assert recovery.take_request(context, "adoe", client, now) is RecoveryOutcome.APPROVAL_REQUESTED
    assert recovery.take_request(context, "Alice.Doe@Example.com", client, now + timedelta(hours=1)) is (
        RecoveryOutcome.ALREADY_PENDING
    )
    with context.sessions() as session:
        [request] = session.scalars(select(RecoveryRequest)).all()
        assert (request.account_id, request.request_count, request.status) == (account_id, 2, "pending")
        assert request.expires_at == now + RECOVERY_TTL
    [card] = recovery.cards_to_post(context, now)
    assert card.address == "alice.doe@example.com" and card.delivery_state == "never emailed"

    later = now + RECOVERY_TTL + timedelta(seconds=1)
    with pytest.raises(DecisionRefused, match="already expired"):
        recovery.approve(context, request.id, "slack:U0ADMIN01", now=later)
    assert recovery.cards_to_post(context, later) == []
    # A request after expiry starts a new one.
    assert recovery.take_request(context, "adoe", client, later) is RecoveryOutcome.APPROVAL_REQUESTED
    actions = [(action, outcome) for action, outcome, _ in recovery_actions(context)]
    assert actions == [
        ("portal.recovery_requested", "approval_requested"),
        ("portal.recovery_requested", "already_pending"),
        ("recovery.expired", ""),
        ("portal.recovery_requested", "approval_requested"),
    ]
    assert all(
        d["client_address"] == "198.51.100.4" for a, _, d in recovery_actions(context) if "requested" in a
    )


@pytest.mark.parametrize(
    ("case", "fields"),
    [
        ("never emailed", {"status": AccountStatus.PENDING, "credentials_emailed_at": None}),
        ("disabled", {"status": AccountStatus.DISABLED}),
        ("locked by an admin", {"status": AccountStatus.LOCKED}),
    ],
)
def test_accounts_that_cannot_be_recovered_are_only_audited(
    context: Context, case: str, fields: dict[str, Any]
) -> None:
    add_person(context, **{"status": AccountStatus.INVITED, "credentials_emailed_at": utcnow(), **fields})
    assert recovery.take_request(context, "adoe") is RecoveryOutcome.NOT_ELIGIBLE, case
    assert recovery.take_request(context, "nobody@example.com") is RecoveryOutcome.NO_ACCOUNT
    with context.sessions() as session:
        assert session.scalars(select(RecoveryRequest)).all() == []
    assert outbox(context, "credbot-password-reset") == []


def test_a_reset_link_works_once_only_the_newest_works_and_it_expires_after_an_hour(
    context: Context,
) -> None:
    account_id = active(context)
    context_settings = context.settings.model_copy(update={"portal_url": "http://localhost/portal"})
    clock = ManualClock()
    ctx = Context(context_settings, context.sessions, clock)
    app = make_portal_app(ctx)
    signed_in = Browser(app.test_client())
    assert signed_in.sign_in("bsmith", GOOD_PASSWORD).status_code == 303

    assert recovery.take_request(ctx, "bsmith", Client("203.0.113.9", "Safari")) is RecoveryOutcome.RESET_SENT
    assert recovery.take_request(ctx, "BOB.SMITH@example.com") is RecoveryOutcome.RESET_SENT
    first, newest = (reset_url(m) for m in outbox(ctx, "credbot-password-reset"))
    assert first != newest
    assert "works once, until" in body_text(outbox(ctx, "credbot-password-reset")[0])

    browser = Browser(app.test_client())
    path = newest.removeprefix("http://localhost")
    browser.get(first.removeprefix("http://localhost"))
    assert browser.post(first.removeprefix("http://localhost")).status_code == 410, "replaced by the newest"
    browser.get(path)
    assert browser.post(path).status_code == 303
    browser.get("/portal/setup/password")
    form = {"new_password": "harbour-violin-pebble-42", "confirm_password": "harbour-violin-pebble-42"}
    assert browser.post("/portal/setup/password", form).status_code == 303
    assert verify_password("harbour-violin-pebble-42", get_account(ctx, account_id).password_hash)
    assert signed_in.get("/portal/").headers["Location"] == "/portal/login", "every other session ended"
    browser.get(path)
    assert browser.post(path).status_code == 410, "used once"

    # A link is refused once an hour has passed.
    assert recovery.take_request(ctx, "bsmith") is RecoveryOutcome.RESET_SENT
    stale = reset_url(outbox(ctx, "credbot-password-reset")[-1]).removeprefix("http://localhost")
    clock.advance(RESET_LINK_TTL.total_seconds() - 1)
    late = Browser(app.test_client())
    late.get(stale)
    assert late.post(stale).status_code == 303, "still usable just before the hour"
    clock.advance(2)
    assert late.get("/portal/setup/password").status_code == 410
    late.get(stale)
    assert late.post(stale).status_code == 410

    sent = [d for a, _, d in recovery_actions(ctx) if a == "portal.reset_link_sent"]
    assert len(sent) == 3 and sent[0]["client_address"] == "203.0.113.9"


# --- The portal's pages: one answer for everyone, limited --------------------------------------------------


def answer_of(browser: Browser, who: str, agent: str = "Firefox/140") -> tuple[int, str, float]:
    browser.get("/portal/recover")
    started = time.perf_counter()
    response = browser.post("/portal/recover", {"who": who}, headers={"User-Agent": agent})
    took = time.perf_counter() - started
    page = re.sub(r'name="csrf_token" value="[^"]+"', "", response.text)
    return response.status_code, page, took


@pytest.fixture
def recovering(context: Context) -> Iterator[tuple[Context, Flask]]:
    jobs.configure(context, redis_url="")
    ctx = Context(
        context.settings.model_copy(update={"recovery_rate_limit": "1000/minute"}), context.sessions
    )
    yield ctx, make_portal_app(ctx)
    jobs.shutdown()


def test_the_answer_and_its_timing_are_the_same_for_known_and_unknown_people(
    recovering: tuple[Context, Flask],
) -> None:
    ctx, app = recovering
    invited(ctx)
    active(ctx)
    browser = Browser(app.test_client())
    names = ["adoe", "bsmith", "nobody", "someone@elsewhere.example"]
    answers = {name: answer_of(browser, name)[:2] for name in names}
    assert len(set(answers.values())) == 1, answers
    status, page = answers["nobody"]
    assert status == 200 and "If an account matches what you typed" in page
    jobs.join()

    # Timing: interleaved, so that the machine's load falls on both alike; the request only enqueues.
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    for round_ in range(15):
        for kind, who in (("known", "adoe"), ("unknown", f"nobody{round_}")):
            times[kind].append(answer_of(browser, who)[2])
    jobs.join()
    known, unknown = (statistics.median(times[kind]) for kind in ("known", "unknown"))
    assert abs(known - unknown) < max(0.005, 0.5 * min(known, unknown)), times

    outcomes = [
        outcome for action, outcome, _ in recovery_actions(ctx) if action == "portal.recovery_requested"
    ]
    assert outcomes.count("no_account") == 17 and outcomes.count("reset_link") == 1
    assert outcomes.count("approval_requested") == 1 and outcomes.count("already_pending") == 15
    assert {d["user_agent"] for a, _, d in recovery_actions(ctx) if "requested" in a} == {"Firefox/140"}


def test_requests_are_limited_per_address(context: Context) -> None:
    jobs.configure(context, redis_url="")
    app = make_portal_app(context)  # the default RECOVERY_RATE_LIMIT: 5 a minute
    browser = Browser(app.test_client())
    assert [answer_of(browser, f"someone{n}")[0] for n in range(6)] == [200] * 5 + [429]
    jobs.join()


def test_the_sign_in_page_offers_recovery_and_it_works_without_javascript(browser: Browser) -> None:
    page = browser.get("/portal/login").text
    assert "Didn't get your email, or it expired?" in page and 'href="/portal/recover"' in page
    form = browser.get("/portal/recover").text
    assert '<form method="post" action="/portal/recover">' in form and 'name="who"' in form


# --- Slack: the approval card, Approve and Deny ------------------------------------------------------------


@pytest.fixture
def slack_app(settings: Settings, slack_standin: SlackStandIn) -> Iterator[RunningApp]:
    configured = slack_settings(settings, slack_standin, audit_channel_id=AUDIT_CHANNEL)
    slack_standin.channels.add(AUDIT_CHANNEL)
    yield from serve_app(configured, slack_standin)


def request_from_portal(app: RunningApp, who: str, agent: str = HOSTILE_AGENT) -> None:
    browser = Browser(app.flask_app.test_client())
    assert answer_of(browser, who, agent)[0] == 200
    jobs.join()


def card_in(app: RunningApp) -> dict[str, Any]:
    [message] = [m for (channel, _), m in app.slack.messages.items() if channel == AUDIT_CHANNEL]
    return message


def buttons_of(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    blocks = message["blocks"] if isinstance(message["blocks"], list) else json.loads(message["blocks"])
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def text_of_blocks(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"]) if isinstance(message["blocks"], list) else message["blocks"]


def test_an_admin_approves_in_slack_and_the_usual_confirmation_sends(slack_app: RunningApp) -> None:
    app = slack_app
    ctx = app.ctx
    account_id = invited(ctx, first_name="Alice <!here>")
    request_from_portal(app, "adoe")
    request_from_portal(app, "alice.doe@example.com")  # collapses into the pending request
    client = make_web_client(ctx.settings)
    app.slack.channels.discard(AUDIT_CHANNEL)  # credbot not in the channel yet: the card waits
    assert post_cards(ctx, client) == 0
    assert audit_events(ctx.sessions, "slack.call_failed")[0].details["error"] == "channel_not_found"
    app.slack.channels.add(AUDIT_CHANNEL)
    assert post_cards(ctx, client) == 1
    assert post_cards(ctx, client) == 0, "posted once"
    card = card_in(app)
    shown = text_of_blocks(card)
    assert "alice.doe@example.com" in shown and "never emailed" in shown and "(2 requests)" in shown
    # The name is escaped; the user agent, which the requester wrote, is made inert (look-alike brackets).
    assert "127.0.0.1" in shown and "&lt;!here&gt;" in shown
    assert "\\u2039script\\u203a" in shown and "\\u2039!channel\\u203a" in shown  # as JSON escapes them
    assert "<!channel>" not in shown and "<!here>" not in shown and "<@U0ADMIN01>" not in shown
    request_id = buttons_of(card)[ids.RECOVERY_APPROVE_ACTION]["value"]

    # Only admins: a refusal is audited and nothing is decided.
    assert app.requests.block_action(ids.RECOVERY_APPROVE_ACTION, request_id, "UOTHER01").status == 200
    app.slack.wait_for(lambda: audit_events(ctx.sessions, "access.refused"), what="the refusal's audit")
    with ctx.sessions() as session:
        assert session.get_one(RecoveryRequest, int(request_id)).status == RecoveryStatus.PENDING

    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.RECOVERY_APPROVE_ACTION, request_id).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    confirm = app.slack.last_view()
    assert confirm["callback_id"] == ids.CONFIRM_VIEW and "alice.doe@example.com" in json.dumps(confirm)
    app.slack.wait_for(lambda: "Approved by" in text_of_blocks(card_in(app)), what="the card's outcome")
    assert ids.RECOVERY_APPROVE_ACTION not in buttons_of(card_in(app))

    assert app.requests.submit(confirm).status == 200  # "Send emails"
    app.slack.wait_for(
        lambda: present(get_account(ctx, account_id).temp_password_expires_at) > utcnow(),
        what="new credentials",
    )
    assert get_account(ctx, account_id).status == AccountStatus.INVITED

    # A second click is told the request was decided.
    told = len(app.slack.calls_to("chat.postEphemeral"))
    assert app.requests.block_action(ids.RECOVERY_APPROVE_ACTION, request_id).status == 200
    calls = app.slack.wait_for_call("chat.postEphemeral", told + 1)
    assert "already approved" in calls[-1].args["text"]
    decisions = [(a, d.get("request_id")) for a, _, d in recovery_actions(ctx) if a.startswith("recovery.")]
    assert decisions == [("recovery.approved", int(request_id))]
    assert audit_events(ctx.sessions, "recovery.approved")[0].actor == f"slack:{ADMIN_ID}"


def test_an_admin_denies_with_a_reason(slack_app: RunningApp) -> None:
    app = slack_app
    ctx = app.ctx
    invited(ctx)
    request_from_portal(app, "adoe")
    post_cards(ctx, make_web_client(ctx.settings))
    request_id = buttons_of(card_in(app))[ids.RECOVERY_DENY_ACTION]["value"]

    opened = len(app.slack.calls_to("views.open"))
    assert app.requests.block_action(ids.RECOVERY_DENY_ACTION, request_id).status == 200
    app.slack.wait_for_call("views.open", opened + 1)
    modal = app.slack.last_view()
    assert modal["callback_id"] == ids.RECOVERY_DENY_VIEW
    empty = app.requests.submit(modal, {ids.REASON_ACTION: "  "})
    assert empty.json()["response_action"] == "errors" and ids.REASON_BLOCK in empty.json()["errors"]
    assert (
        app.requests.submit(modal, {ids.REASON_ACTION: "Not <b>her</b>: she called to say so"}).status == 200
    )
    app.slack.wait_for(lambda: "Denied by" in text_of_blocks(card_in(app)), what="the card's outcome")
    assert "Not &lt;b&gt;her&lt;/b&gt;" in text_of_blocks(card_in(app))
    [denied] = audit_events(ctx.sessions, "recovery.denied")
    assert denied.details["reason"] == "Not <b>her</b>: she called to say so"
    with ctx.sessions() as session:
        account = session.scalars(select(Account).where(Account.username == "adoe")).one()
        assert verify_password(TEMP_PASSWORD, account.password_hash), "nothing was sent"


def test_an_expired_request_shows_on_its_card_and_can_no_longer_be_approved(slack_app: RunningApp) -> None:
    app = slack_app
    invited(app.ctx)
    request_from_portal(app, "adoe")
    with app.ctx.sessions() as session:  # the worker's clock starts when the request was taken, however late
        taken = session.scalars(select(RecoveryRequest.expires_at)).one() - RECOVERY_TTL
    clock = ManualClock(start=taken)
    ctx = replace(app.ctx, clock=clock)  # moved on below
    client = make_web_client(ctx.settings)
    assert post_cards(ctx, client) == 1
    request_id = buttons_of(card_in(app))[ids.RECOVERY_APPROVE_ACTION]["value"]
    clock.advance(RECOVERY_TTL.total_seconds() - 1)
    assert post_cards(ctx, client) == 0
    assert buttons_of(card_in(app)) != {}, "not expired yet"
    clock.advance(2)
    assert post_cards(ctx, client) == 0
    assert "Expired: nobody decided within 24 hours" in text_of_blocks(card_in(app))
    assert buttons_of(card_in(app)) == {}
    assert [row.actor for row in audit_events(ctx.sessions, "recovery.expired")] == ["credbot:recovery"]
    told = len(app.slack.calls_to("chat.postEphemeral"))
    assert app.requests.block_action(ids.RECOVERY_APPROVE_ACTION, request_id).status == 200
    calls = app.slack.wait_for_call("chat.postEphemeral", told + 1)
    assert "already expired" in calls[-1].args["text"]


def test_parallel_requests_for_one_account_collapse_into_one(context: Context) -> None:
    invited(context)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: recovery.take_request(context, "adoe"), range(8)))
    assert sorted(outcomes) == sorted(
        [RecoveryOutcome.APPROVAL_REQUESTED] + [RecoveryOutcome.ALREADY_PENDING] * 7
    )
    with context.sessions() as session:
        [request] = session.scalars(select(RecoveryRequest)).all()
        assert request.request_count == 8


def test_a_reset_email_the_mail_api_refuses_is_revoked_and_audited_and_the_last_accepted_one_works(
    context: Context, sendgrid_standin: SendGridStandIn
) -> None:
    ctx = sendgrid_context(context, sendgrid_standin)
    account_id = active(ctx)
    assert recovery.take_request(ctx, "bsmith") is RecoveryOutcome.RESET_SENT
    sendgrid_standin.answer(400, to="bob.smith@example.com", category="credbot-password-reset")
    assert recovery.take_request(ctx, "bsmith") is RecoveryOutcome.RESET_FAILED
    with ctx.sessions() as session:
        links = session.scalars(select(SetupLink).where(SetupLink.account_id == account_id)).all()
        assert [link.revoked_at is None for link in links] == [True, False], "the accepted one works"
    [failed] = audit_events(ctx.sessions, "portal.reset_link_failed")
    assert failed.target == "account:bsmith" and failed.details["error"]


def test_the_card_shows_a_user_agent_and_a_bounce_reason_inert() -> None:
    from datetime import UTC, datetime

    from bot.portal.recovery import RecoveryCard
    from handlers.recovery_messages import card_message

    moment = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    card = RecoveryCard(
        request_id=1, status="pending", employee_id=1, employee_number="1001", name="Ada Lovelace",
        username="alovelace", address="ada@example.com", last_emailed_at=moment,
        delivery_state="emailed, bounced (550 *Reset here* http://evil.example/reset)",
        requested_at=moment, request_count=1, expires_at=moment, client_address="203.0.113.9",
        user_agent="Mozilla <!channel> `x` https://phish.example/login", card_channel=None, card_ts=None,
        decided_by=None, reason=None,
    )  # fmt: skip
    _, blocks = card_message(card)
    shown = str(blocks)
    for live in ("http://", "https://", "evil.example", "phish.example", "*Reset", "<!channel>", "`x`"):
        assert live not in shown, live
    assert "hxxp://evil[.]example" in shown and "hxxps://phish[.]example" in shown
