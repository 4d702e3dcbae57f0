"""A scheduled batch in Slack, the steps its listeners share: the channel message when it is scheduled
(its trail at each moment follows on it, `handlers.sending`), and what the Cancel button does (on that
message and in App Home's Scheduled section; `handlers.actions` registers it)."""

from __future__ import annotations

import contextlib
from typing import Any

from slack_sdk import WebClient

from bot.audit import slack_actor
from bot.context import Context
from bot.sending.schedule import cancel
from handlers.app_home import republish_homes
from handlers.blocks import section
from handlers.sending import ChannelTrail
from handlers.slack_calls import SlackCallFailed, call, tell_user
from handlers.views_schedule import cancelled_text, scheduled_blocks, scheduled_text
from models import CredentialBatch


def announce(
    ctx: Context, client: WebClient, user_id: str, channel_id: str | None, batch_id: int, line: str
) -> None:
    """Post the scheduled batch's message with its Cancel button (the admin's DM if the channel refuses)."""
    text = scheduled_text(user_id, batch_id, line)
    ChannelTrail(ctx, client, user_id, channel_id, batch_id).scheduled(text, scheduled_blocks(text, batch_id))


def cancel_from_slack(ctx: Context, client: WebClient, body: dict[str, Any]) -> None:
    """Cancel what of the button's batch is not yet sent (audited); say so on its message and thread."""
    user_id, channel_id = body["user"]["id"], (body.get("channel") or {}).get("id")
    value = str(body["actions"][0].get("value", ""))
    try:
        with ctx.sessions.begin() as session:
            cancelled = cancel(session, int(value) if value.isdigit() else 0, slack_actor(user_id))
    except LookupError:
        tell_user(ctx, client, user_id, channel_id, "I cannot find that batch any more.")
        return
    batch_id = int(value)
    with ctx.sessions() as session:
        batch = session.get_one(CredentialBatch, batch_id)
        where, ts = batch.channel_id, batch.slack_message_ts
    text = cancelled_text(user_id, batch_id, cancelled)
    if where and ts:  # the batch's message: its button goes, the thread says who cancelled
        with contextlib.suppress(SlackCallFailed):  # audited
            actor = slack_actor(user_id)
            call(
                ctx,
                actor,
                "chat.update",
                client.chat_update,
                channel=where,
                ts=ts,
                text=text,
                blocks=[section(text)],
            )
            call(
                ctx,
                actor,
                "chat.postMessage",
                client.chat_postMessage,
                channel=where,
                thread_ts=ts,
                text=text,
            )
    else:
        tell_user(ctx, client, user_id, channel_id, text)
    republish_homes(ctx, client)
