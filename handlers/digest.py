"""The daily digest as a channel message, posted to AUDIT_CHANNEL_ID at DIGEST_TIME by the worker's
scheduler (`daily_digest`), or on demand by `credbot digest --post`."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot import jobs
from bot.audit import DIGEST_ACTOR, AuditAction, record_now
from bot.context import Context
from bot.digest import Digest, build_digest
from bot.onboarding import Person
from handlers.blocks import Block, context, header, listed_sections, person_line, section
from handlers.slack_calls import SlackCallFailed, call

log = logging.getLogger(__name__)

MAX_SECTIONS = 8
"""Sections per part of the message (Slack shows up to 50 blocks); the rest is counted."""


class DigestNotPosted(RuntimeError):
    """No AUDIT_CHANNEL_ID, or Slack refused the message (audited); the message says which."""


def _when(person: Person, verb: str) -> str:
    return (
        f"{verb} <!date^{int(person.deadline.timestamp())}^{{date_short_pretty}} {{time}}|soon>"
        if (person.deadline)
        else verb
    )


def _part(title: str, people: list[Person], note: str) -> list[Block]:
    lines = [
        person_line(p.name, p.employee_number, p.username, None) + (f": {_when(p, note)}" if note else "")
        for p in people
    ]
    return [section(f"*{title} ({len(people):,})*"), *listed_sections(lines, MAX_SECTIONS)] if people else []


def digest_message(digest: Digest) -> dict[str, Any]:
    """chat.postMessage arguments for the digest: a summary text and the blocks listing everyone."""
    counts = (
        f"{len(digest.expiring):,} expiring within 24 hours, {len(digest.expired_recently):,} expired unused "
        f"since yesterday, {len(digest.locked):,} locked"
    )
    blocks: list[Block] = [header("credbot daily digest"), section(counts.capitalize() + ".")]
    blocks += _part("Expiring within 24 hours", digest.expiring, "expires")
    blocks += _part("Expired unused since yesterday", digest.expired_recently, "expired")
    blocks += _part("Locked", digest.locked, "")
    blocks.append(
        context(
            f"{digest.expired_total:,} emailed credentials have expired unused in all. "
            "Resend from App Home, or get the account report there."
        )
    )
    return {"text": f"credbot daily digest: {counts}.", "blocks": blocks}


def post_digest(ctx: Context, client: WebClient | None = None) -> str:
    """Build the digest and post it to AUDIT_CHANNEL_ID; the message's ts. Audited either way."""
    from bot.slack_app import make_web_client

    channel = ctx.settings.audit_channel_id
    if not channel:
        raise DigestNotPosted("AUDIT_CHANNEL_ID is not set: the digest has nowhere to go.")
    with ctx.sessions() as session:
        digest = build_digest(session)
    client = client or make_web_client(ctx.settings, ctx.clock)
    try:
        response = call(
            ctx,
            DIGEST_ACTOR,
            "chat.postMessage",
            client.chat_postMessage,
            channel=channel,
            **digest_message(digest),
        )
    except SlackCallFailed as failure:
        raise DigestNotPosted(f"Slack did not take the digest: {failure.explanation}") from failure
    record_now(
        ctx.sessions,
        DIGEST_ACTOR,
        AuditAction.DIGEST_POSTED,
        channel,
        expiring=len(digest.expiring),
        expired_recently=len(digest.expired_recently),
        locked=len(digest.locked),
    )
    return str(response["ts"])


@jobs.daily(at=lambda settings: settings.digest_time)
@jobs.job(max_retries=3)
def daily_digest(ctx: Context) -> None:
    """The scheduled digest (off while DIGEST_TIME is empty). Slack failing is retried by the job layer."""
    if not ctx.settings.audit_channel_id:
        log.warning("DIGEST_TIME is set but AUDIT_CHANNEL_ID is not: no digest posted")
        return
    post_digest(ctx)
