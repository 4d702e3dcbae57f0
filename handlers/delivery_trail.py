"""SendGrid's delivery events in a batch's Slack trail: the delivery line on the summary message, and each
bounced, dropped or blocked employee posted once in the thread with buttons to fix and resend.

The web process stores SendGrid's events and enqueues the job `refresh_delivery_trail` for when a batch's
update is due (credbot.web). At most one update per batch is scheduled at a time, at most every
UPDATE_INTERVAL (the database decides, across processes), so Slack sees a few updates whatever the
event rate. chat.update's budget, shared by every batch (bot.slack_rates), spaces them further when
many batches run; a line with nothing left waiting is final and goes ahead of routine ones.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime

from slack_sdk import WebClient

from bot import jobs
from bot.context import Context
from bot.delivery_events import (
    UPDATE_INTERVAL,
    MailState,
    claim_problems,
    claim_summary_update,
    due_at,
    release_problems,
    state_counts,
)
from bot.rate_budget import Priority
from bot.slack_app import make_web_client
from bot.slack_rates import take_slot
from handlers.delivery_messages import problem_messages, with_delivery_line
from handlers.slack_calls import SlackCallFailed, call
from models import utcnow


def update_delivery_trail(
    ctx: Context,
    batch_id: int,
    client: WebClient | None = None,
    *,
    now_if_due: bool = False,
    shown: dict[str, int] | None = None,
) -> None:
    """When the batch's update is due: put the current delivery line on its summary, post new problems.

    `now_if_due`: do a scheduled update at once (the summary has just been posted); `shown`: the counts
    that summary's line shows, so it is brought up to date even when an update that ran meanwhile took
    the scheduled one (its chat.update may have landed before the summary's own).
    """
    if not now_if_due:
        due = due_at(ctx.sessions, batch_id)
        if due is None:
            return
        wait = (due - utcnow()).total_seconds()
        if wait > 0:
            time.sleep(min(wait, UPDATE_INTERVAL.total_seconds()))
    update = claim_summary_update(ctx.sessions, batch_id, now_if_due=now_if_due)
    if update is None and shown is not None:
        with ctx.sessions() as session:
            stale = state_counts(session, batch_id) != shown
        if stale:
            update = claim_summary_update(ctx.sessions, batch_id, now_anyway=True)
    if update is None:
        return
    client = client or make_web_client(ctx.settings, ctx.clock)
    message = update.message
    # Routine lines wait behind final ones (nothing left waiting), which may use the budget's reserve.
    final = update.counts.get(MailState.WAITING, 0) == 0
    take_slot(ctx.settings, ctx.clock, "chat.update", Priority.URGENT if final else Priority.WAIT)
    with ctx.sessions() as session:  # the counts as they are now, after any wait for the slot
        text, blocks = with_delivery_line(message, state_counts(session, batch_id))
    with contextlib.suppress(SlackCallFailed):  # audited; the next update tries again
        call(
            ctx,
            update.requested_by,
            "chat.update",
            client.chat_update,
            priority=None,
            channel=message["channel"],
            ts=message["ts"],
            text=text,
            blocks=blocks,
        )
    for text, blocks, chunk in problem_messages(claim_problems(ctx.sessions, batch_id)):
        try:
            call(
                ctx,
                update.requested_by,
                "chat.postMessage",
                client.chat_postMessage,
                channel=message["channel"],
                thread_ts=message["ts"],
                text=text,
                blocks=blocks,
            )
        except SlackCallFailed:  # audited; posted again with the batch's next update
            release_problems(ctx.sessions, [problem.delivery_id for problem in chunk])


@jobs.job(max_retries=3)
def refresh_delivery_trail(ctx: Context, batch_id: int) -> None:
    """The job: the batch's delivery line and new problems, once its update is due."""
    update_delivery_trail(ctx, batch_id)


def enqueue_delivery_update(ctx: Context, batch_id: int, due: datetime) -> None:
    """Enqueue the batch's update to run at `due` (the web process only answers and enqueues)."""
    jobs.use(ctx)
    delay = (due - utcnow()).total_seconds()
    refresh_delivery_trail.send(batch_id, delay_seconds=delay if delay > 0 else None)
