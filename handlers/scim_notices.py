"""SCIM's new hires and leavers in the audit channel: the job that posts each grouped notice (bot.scim_notices
groups them, at most one a minute), and the notice's buttons, which open the usual confirmation for the
hires who still need credentials. Only admins get here (middleware refuses, and audits, the rest).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import jobs
from bot.context import Context
from bot.rate_budget import Priority
from bot.scim_notices import hires_to_confirm, notice_posted, notices_to_post
from bot.sending.schedule import When
from bot.slack_app import make_web_client, slack_wanted
from handlers import ids
from handlers.background import Background, clicked_by
from handlers.credentials_flow import open_review
from handlers.scim_messages import notice_message
from handlers.slack_calls import SlackCallFailed, call, tell_user

log = logging.getLogger(__name__)

POST_EVERY_SECONDS = 10
NOTICES_PER_RUN = 3
NOTICE_ACTOR = "credbot:scim"


def register(app: App) -> None:
    app.action(ids.SCIM_SCHEDULE_ACTION)(schedule)
    app.action(ids.SCIM_REVIEW_ACTION)(review)


def schedule(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start(
        "opening the confirmation", user_id, channel_id, open_confirmation, body, When.START_DATE
    )


def review(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("opening the confirmation", user_id, channel_id, open_confirmation, body, When.NOW)


def open_confirmation(ctx: Context, client: WebClient, body: dict[str, Any], when: When) -> None:
    """The usual confirmation for the button's hires who still need credentials (a notice's, or on App
    Home every SCIM hire's); "Send emails" there sends. `when`: the choice it opens with."""
    user_id, channel_id = clicked_by(body)
    value = str(body["actions"][0].get("value", ""))
    if value != ids.SCIM_ALL_HIRES and not value.isdigit():
        return
    with ctx.sessions() as session:
        employee_ids = hires_to_confirm(session, None if value == ids.SCIM_ALL_HIRES else int(value))
    if not employee_ids:
        tell_user(
            ctx, client, user_id, channel_id, "These new hires have all been emailed their credentials."
        )
        return
    open_review(ctx, client, user_id, channel_id, body["trigger_id"], employee_ids, when)


def post_notices(ctx: Context, client: WebClient) -> int:
    """Post the notices not in Slack yet to AUDIT_CHANNEL_ID, oldest first; how many were posted.

    A notice Slack refused stays in the outbox (the next run tries again); the failure is audited. They
    take routine slots of chat.postMessage's budget for the channel.
    """
    channel = ctx.settings.audit_channel_id
    if not channel:
        log.warning("SCIM changes wait to be announced, but AUDIT_CHANNEL_ID is not set: nothing posted")
        return 0
    now = ctx.clock.now()
    with ctx.sessions() as session:
        notices = notices_to_post(session, now, NOTICES_PER_RUN)
    posted = 0
    for notice in notices:
        try:
            response = call(
                ctx,
                NOTICE_ACTOR,
                "chat.postMessage",
                client.chat_postMessage,
                priority=Priority.WAIT,
                channel=channel,
                **notice_message(notice, now.date()),
            )
        except SlackCallFailed:
            break  # Slack away or the channel wrong: the others would fail the same way
        notice_posted(ctx.sessions, notice.notice_id, str(response["channel"]), str(response["ts"]))
        posted += 1
    return posted


@jobs.every(POST_EVERY_SECONDS)
@jobs.job(max_retries=0)
def post_scim_notices(ctx: Context) -> None:
    """The periodic job: SCIM notices into the audit channel (nothing when Slack is not configured)."""
    if slack_wanted(ctx.settings):
        post_notices(ctx, make_web_client(ctx.settings, ctx.clock))
