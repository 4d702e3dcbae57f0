"""The job that sends a batch started in Slack, keeping its audit trail in the channel.

The entry points register it as the runner of Slack batches (`credbot.wiring`). It runs in a worker
(`credbot worker`, or the in-process worker without REDIS_URL), with a Web API client built from
settings. One message when sending starts, updated at most every PROGRESS_INTERVAL
seconds while it runs, then replaced by the summary; every employee listed in thread replies. A batch
taken up again after its worker stopped says so in the thread and carries on updating the same message.
When the channel cannot be used (channel_not_found, not_in_channel...) the trail goes to the admin's DM
instead, with a note why; every failed Slack call is audited, and the batch itself is always in the
database. When it ends, App Home is published again for the admins who have it open.

Progress updates take chat.update's shared budget only when it has a slot free (one later shows newer
counts); the summary waits for its slot, and may use the part kept for final messages.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from slack_sdk import WebClient

from bot import jobs
from bot.audit import AuditAction, batch_target, record_now, slack_actor, slack_user_of
from bot.context import Context
from bot.delivery_events import remember_summary, state_counts, untracked_reason
from bot.sending.batches import BatchSummary, DeliveryOutcome, delivery_counts, remember_message
from bot.sending.jobs import BATCH_TIME_LIMIT_MS, after_send, requeue_if_drained
from bot.sending.schedule import local_text, waiting
from bot.sending.sender import BatchRunner
from bot.slack_app import make_web_client
from handlers.app_home import republish_homes
from handlers.blocks import Block, context, section
from handlers.delivery_messages import with_delivery_line
from handlers.delivery_trail import update_delivery_trail
from handlers.message_blocks import (
    detail_messages,
    moment_text,
    progress_text,
    resumed_text,
    started_text,
    summary_blocks,
    summary_text,
    waiting_text,
)
from handlers.slack_calls import SlackCallFailed, call, call_unless_busy
from models import CredentialBatch, DeliveryStatus

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 2.0
"""Seconds between two progress updates of the channel message (chat.update is rate-limited)."""


class ChannelTrail:
    """The batch's messages in one channel (or the admin's DM when the channel refuses)."""

    def __init__(
        self, ctx: Context, client: WebClient, user_id: str, channel_id: str | None, batch_id: int
    ) -> None:
        self.ctx, self.client, self.user_id, self.batch_id = ctx, client, user_id, batch_id
        self.actor = slack_actor(user_id)
        self.channel = channel_id or user_id
        self.ts: str | None = None
        self.note = ""
        self.to_send = 0
        self._sent = self._failed = 0
        self._last_update = 0.0
        self._updating = False
        self._lock = threading.Lock()

    def start(self, to_send: int, skipped: int) -> None:
        self.to_send = to_send
        self._last_update = self.ctx.clock.monotonic()
        self.ts = self._post(started_text(self.user_id, self.batch_id, to_send, skipped))
        if self.ts:
            remember_message(self.ctx.sessions, self.batch_id, self.channel, self.ts)

    def resume(self, ts: str | None, counts: dict[str, int], announce: bool = True) -> None:
        """Carry on the trail of a batch whose worker stopped: say so in its thread."""
        done = counts[DeliveryStatus.SENT] + counts[DeliveryStatus.FAILED] + counts[DeliveryStatus.IN_DOUBT]
        self.to_send = done + counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.SENDING]
        self._sent, self._failed = counts[DeliveryStatus.SENT], done - counts[DeliveryStatus.SENT]
        self._last_update = self.ctx.clock.monotonic()
        self.ts = ts
        if ts is None:  # the stopped worker had not posted the batch message yet
            progress = progress_text(self.user_id, self.batch_id, self.to_send, self._sent, self._failed)
            self.ts = self._post(progress)
            if self.ts:
                remember_message(self.ctx.sessions, self.batch_id, self.channel, self.ts)
        if self.ts and announce:
            self._post(resumed_text(self.batch_id, self.to_send - done), thread_ts=self.ts)

    def scheduled(self, text: str, blocks: list[Block]) -> None:
        """The message of a scheduled batch (with its Cancel button): its trail at each moment follows
        on it and in its thread."""
        self.ts = self._post(text, blocks)
        if self.ts:
            remember_message(self.ctx.sessions, self.batch_id, self.channel, self.ts)

    def moment(self, ts: str | None, counts: dict[str, int]) -> None:
        """A scheduled batch's moment came: count from what is done, say in its thread who is due now."""
        self.resume(ts, counts, announce=False)
        due = counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.SENDING]
        if self.ts:
            self._post(moment_text(self.batch_id, due, counts[DeliveryStatus.SCHEDULED]), thread_ts=self.ts)

    def moment_done(self, counts: dict[str, int], next_at: str) -> None:
        """The moment's deliveries ended and more wait: the counts on the message, a line in the thread."""
        if self.ts:
            text = waiting_text(self.user_id, self.batch_id, counts, next_at)
            self._update(text)
            self._post(text, thread_ts=self.ts)

    def progress(self, outcome: DeliveryOutcome) -> None:
        """Count one finished delivery; called from the mail worker threads.

        At most every PROGRESS_INTERVAL, and only when chat.update's budget has a slot free: otherwise
        a later delivery shows the newer counts (updates are coalesced; the summary always comes).
        """
        with self._lock:
            if outcome.status == DeliveryStatus.SENT:
                self._sent += 1
            elif outcome.status in (DeliveryStatus.FAILED, DeliveryStatus.IN_DOUBT):
                self._failed += 1
            due = not self._updating and self.ctx.clock.monotonic() - self._last_update >= PROGRESS_INTERVAL
            self._updating = self._updating or due
            sent, failed = self._sent, self._failed
        if due:
            shown = self._update_unless_busy(
                progress_text(self.user_id, self.batch_id, self.to_send, sent, failed)
            )
            with self._lock:
                self._updating = False
                if shown:
                    self._last_update = self.ctx.clock.monotonic()

    def finish(self, summary: BatchSummary) -> None:
        text, blocks = summary_text(self.user_id, summary), summary_blocks(self.user_id, summary)
        posted_now = not self.ts
        shown: dict[str, int] | None = None  # the counts on the delivery line this writes
        if posted_now:
            self.ts = self._post(text, blocks)
        if self.ts:
            posted = {"channel": self.channel, "ts": self.ts, **self._content(text, blocks)}
            remember_summary(self.ctx.sessions, self.batch_id, posted)
            if self._tracks_delivery():  # "0 delivered · ... · 20 waiting" until SendGrid's events come
                with self.ctx.sessions() as session:
                    shown = state_counts(session, self.batch_id)
                text, blocks = with_delivery_line(posted, shown)
                self._update(text, blocks, shown=True)
            elif not posted_now:
                self._update(text, blocks)
        for chunk in detail_messages(summary):  # paced by chat.postMessage's budget in the channel
            if self._post(chunk, thread_ts=self.ts) is None:
                break
        if self.ts:  # events that came while sending: their update waited for the summary
            update_delivery_trail(self.ctx, self.batch_id, self.client, now_if_due=True, shown=shown)

    def _tracks_delivery(self) -> bool:
        return untracked_reason(self.ctx.settings) is None

    def crashed(self) -> None:
        text = (
            f":x: Sending batch #{self.batch_id} stopped unexpectedly (see the server log). "
            "Employees not yet emailed stay selectable and can be picked again."
        )
        if self.ts:
            self._update(text)
        else:
            self._post(text)

    def _content(self, text: str, blocks: list[Block] | None) -> dict[str, Any]:
        """Message arguments: `text` is the notification fallback, the blocks are what is shown."""
        shown = blocks if blocks is not None else [section(text)]
        return {"text": text, "blocks": [context(self.note), *shown] if self.note else shown}

    def _post(self, text: str, blocks: list[Block] | None = None, thread_ts: str | None = None) -> str | None:
        """Post a message; on the first channel failure, move the trail to the admin's DM and say why."""
        kwargs = self._content(text, blocks)
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        try:
            response = call(
                self.ctx,
                self.actor,
                "chat.postMessage",
                self.client.chat_postMessage,
                channel=self.channel,
                **kwargs,
            )
        except SlackCallFailed as failure:
            if self.channel == self.user_id or thread_ts:
                return None
            self.note = f"I could not post in <#{self.channel}>: {failure.explanation}"
            self.channel = self.user_id
            return self._post(text, blocks)
        if not thread_ts:  # posted to a user id, the message lives in the DM: updates need its D... id
            self.channel = str(response["channel"])
        return str(response["ts"])

    def _update(self, text: str, blocks: list[Block] | None = None, shown: bool = False) -> None:
        """Update the batch's message (`shown`: `blocks` are complete, note included, as shown)."""
        content = {"text": text, "blocks": blocks} if shown else self._content(text, blocks)
        # A failure is audited; the next update or the summary tries again.
        with contextlib.suppress(SlackCallFailed):
            call(
                self.ctx,
                self.actor,
                "chat.update",
                self.client.chat_update,
                channel=self.channel,
                ts=self.ts,
                **content,
            )

    def _update_unless_busy(self, text: str) -> bool:
        """A progress update if chat.update's budget has a slot now; False if it was skipped or failed."""
        try:
            done = call_unless_busy(
                self.ctx,
                self.actor,
                "chat.update",
                self.client.chat_update,
                channel=self.channel,
                ts=self.ts,
                **self._content(text, None),
            )
        except SlackCallFailed:  # audited
            return False
        return done is not None


def _trail_crashed(ctx: Context, error: Exception, batch_id: int, resumed: bool = False) -> None:
    """The batch job gave up (the database away for minutes): say so; the sweeper resumes it later."""
    trail, _ = _trail(ctx, batch_id)
    record_now(
        ctx.sessions,
        trail.actor,
        AuditAction.BATCH_ABORTED,
        batch_target(batch_id),
        error=type(error).__name__,
    )
    trail.crashed()


@jobs.job(max_retries=5, time_limit_ms=BATCH_TIME_LIMIT_MS, on_give_up=_trail_crashed)
def send_batch_with_trail(ctx: Context, batch_id: int, resumed: bool = False) -> None:
    """Run a batch started in Slack and keep its channel trail current."""
    trail, ts = _trail(ctx, batch_id)
    with ctx.sessions() as session:
        counts = delivery_counts(session, batch_id)
        scheduled = session.get_one(CredentialBatch, batch_id).schedule is not None
    if scheduled and not resumed:  # one of its moments
        trail.moment(ts, counts)
    elif resumed or ts:
        trail.resume(ts, counts)
    else:
        trail.start(counts[DeliveryStatus.PENDING], counts[DeliveryStatus.SKIPPED])
    runner = BatchRunner(ctx, batch_id, on_progress=trail.progress)
    try:
        summary, ended_here = runner.run()
    except Exception:
        log.exception("batch %s stopped unexpectedly", batch_id)
        raise
    if ended_here:
        trail.finish(summary)
        republish_homes(ctx, trail.client)
    elif scheduled and not runner.drained:
        with ctx.sessions() as session:
            counts = delivery_counts(session, batch_id)
            found = waiting(session, [batch_id]).get(batch_id)
        if found is not None:
            trail.moment_done(counts, local_text(found.next_at, "UTC"))
    after_send(ctx, batch_id)
    requeue_if_drained(ctx, runner)


def _trail(ctx: Context, batch_id: int) -> tuple[ChannelTrail, str | None]:
    with ctx.sessions() as session:
        batch = session.get_one(CredentialBatch, batch_id)
        user_id = slack_user_of(batch.requested_by) or batch.requested_by
        channel_id, ts = batch.channel_id, batch.slack_message_ts
    return ChannelTrail(ctx, make_web_client(ctx.settings, ctx.clock), user_id, channel_id, batch_id), ts
