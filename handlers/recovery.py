"""Recovery requests in Slack: the job that posts each pending request's card to AUDIT_CHANNEL_ID (and
marks expired ones), and the card's buttons. Approve opens the usual confirmation for the employee
(which sends); Deny asks for a reason. Only admins get here (middleware refuses, and audits, the rest).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import jobs
from bot.audit import slack_actor
from bot.context import Context
from bot.portal import recovery
from bot.portal.recovery import DecisionRefused, RecoveryCard
from bot.slack_app import make_web_client, slack_wanted
from handlers import ids
from handlers.background import Background, clicked_by
from handlers.credentials_flow import open_review
from handlers.recovery_messages import card_message, deny_view
from handlers.slack_calls import SlackCallFailed, call, call_or_tell, tell_user
from handlers.views_credentials import message_view

log = logging.getLogger(__name__)

CARD_POLL_SECONDS = 10
CARD_INTERVAL = 1.0
CARDS_PER_RUN = 8
CARD_ACTOR = "credbot:recovery"


def register(app: App) -> None:
    app.action(ids.RECOVERY_APPROVE_ACTION)(approve)
    app.action(ids.RECOVERY_DENY_ACTION)(deny)
    app.view(ids.RECOVERY_DENY_VIEW)(deny_submitted)


def approve(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("approving the recovery request", user_id, channel_id, approve_and_confirm, body)


def deny(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("opening the window", user_id, channel_id, open_deny, body)


def deny_submitted(
    ack: Ack,
    body: dict[str, Any],
    form: dict[str, Any],
    user_id: str,
    ctx: Context,
    background: Background,
) -> None:
    """A reason is required; the decision itself is a quick update of one row, so it is taken here."""
    reason = str(form.get(ids.REASON_ACTION) or "").strip()
    if not reason:
        ack(response_action="errors", errors={ids.REASON_BLOCK: "Say why the request is denied."})
        return
    request_id = _request_id(body["view"].get("private_metadata", ""))
    try:
        card = recovery.deny(ctx, request_id, slack_actor(user_id), reason)
    except DecisionRefused as refused:
        ack(response_action="update", view=message_view("Not denied", str(refused)))
        return
    ack()
    background.start("updating the request's card", user_id, None, update_card, card)


def approve_and_confirm(ctx: Context, client: WebClient, body: dict[str, Any]) -> None:
    """Record the approval, open the confirmation for the employee (its "Send emails" sends), then
    update the card."""
    user_id, channel_id = clicked_by(body)
    try:
        card = recovery.approve(ctx, _request_id(body["actions"][0].get("value", "")), slack_actor(user_id))
    except DecisionRefused as refused:
        tell_user(ctx, client, user_id, channel_id, str(refused))
        return
    open_review(ctx, client, user_id, channel_id, body["trigger_id"], [card.employee_id])
    update_card(ctx, client, card)


def open_deny(ctx: Context, client: WebClient, body: dict[str, Any]) -> None:
    user_id, channel_id = clicked_by(body)
    with ctx.sessions() as session:
        card = recovery.card_of(session, _request_id(body["actions"][0].get("value", "")))
    if card is None or card.status != "pending":
        tell_user(ctx, client, user_id, channel_id, "This recovery request was already decided or expired.")
        return
    call_or_tell(
        ctx,
        client,
        user_id,
        channel_id,
        "I could not open the window",
        "views.open",
        client.views_open,
        trigger_id=body["trigger_id"],
        view=deny_view(card),
    )


def update_card(ctx: Context, client: WebClient, card: RecoveryCard) -> None:
    """Show the card's outcome in place of its buttons (failures are audited; the decision stands)."""
    if not card.card_channel or not card.card_ts:
        return
    text, blocks = card_message(card)
    with contextlib.suppress(SlackCallFailed):
        call(
            ctx,
            CARD_ACTOR,
            "chat.update",
            client.chat_update,
            channel=card.card_channel,
            ts=card.card_ts,
            text=text,
            blocks=blocks,
        )


def post_cards(ctx: Context, client: WebClient) -> int:
    """Post the card of every pending request not in Slack yet, and close expired ones; how many posted.

    A card Slack refused stays in the outbox (the next run tries again); the failure is audited. Cards
    go out one a second (chat.postMessage allows about one message a second per channel), at most
    CARDS_PER_RUN per run.
    """
    for expired in recovery.expire_due(ctx):
        update_card(ctx, client, expired)
    channel = ctx.settings.audit_channel_id
    if not channel:
        log.warning("recovery requests wait for an admin, but AUDIT_CHANNEL_ID is not set: no card posted")
        return 0
    posted = 0
    for card in recovery.cards_to_post(ctx)[:CARDS_PER_RUN]:
        if posted:
            time.sleep(CARD_INTERVAL)
        text, blocks = card_message(card)
        try:
            response = call(
                ctx,
                CARD_ACTOR,
                "chat.postMessage",
                client.chat_postMessage,
                channel=channel,
                text=text,
                blocks=blocks,
            )
        except SlackCallFailed:
            break  # Slack away or the channel wrong: every other card would fail the same way
        recovery.card_posted(ctx, card.request_id, str(response["channel"]), str(response["ts"]))
        posted += 1
    return posted


@jobs.every(CARD_POLL_SECONDS)
@jobs.job(max_retries=0)
def post_recovery_cards(ctx: Context) -> None:
    """The periodic job: recovery cards into the audit channel (nothing when Slack is not configured)."""
    if slack_wanted(ctx.settings):
        post_cards(ctx, make_web_client(ctx.settings))


def _request_id(value: str) -> int:
    return int(value) if value.isdigit() else 0
