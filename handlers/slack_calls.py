"""Slack calls that may fail: every failure is audited, and the admin is told in words.

Every call first takes a slot of its method's shared rate budget (bot.slack_rates): routine updates
wait behind, or skip for, the calls someone is waiting for.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient

from bot.audit import AuditAction, record_now, slack_actor
from bot.context import Context
from bot.rate_budget import Priority
from bot.slack_app import SLACK_TIMEOUT_SECONDS
from bot.slack_rates import take_slot

log = logging.getLogger(__name__)

EXPLANATIONS = {
    "expired_trigger_id": "Slack gave me less than 3 seconds to open the window and the time ran out. "
    "Please type the command again.",
    "exchanged_trigger_id": "this window was already opened once. Please type the command again.",
    "ratelimited": "Slack is rate-limiting credbot right now. Please wait a minute and try again.",
    "channel_not_found": "I cannot see that channel. Invite me to it (`/invite @credbot`) or set "
    "AUDIT_CHANNEL_ID to a channel I am in.",
    "not_in_channel": "I am not a member of that channel. Invite me to it (`/invite @credbot`) or set "
    "AUDIT_CHANNEL_ID to a channel I am in.",
    "is_archived": "that channel is archived. Set AUDIT_CHANNEL_ID to a channel I am in.",
    "invalid_auth": "my Slack token was refused. Ask whoever runs credbot to check SLACK_BOT_TOKEN.",
    "token_revoked": "my Slack token was revoked. Ask whoever runs credbot to reinstall the app.",
}


class SlackCallFailed(Exception):
    """A Web API call failed (already audited); `error` is Slack's error code or the network problem."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method} failed: {error}")
        self.method = method
        self.error = error

    @property
    def explanation(self) -> str:
        return EXPLANATIONS.get(self.error, f"Slack answered `{self.error}` to `{self.method}`.")


def error_code(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or f"HTTP {error.response.status_code}")
    return type(error).__name__


def call(
    ctx: Context,
    actor: str,
    method: str,
    function: Callable[..., SlackResponse],
    *,
    priority: Priority | None = Priority.URGENT,
    **kwargs: Any,
) -> SlackResponse:
    """`function(**kwargs)` once the budget has a slot (`priority`: URGENT for what someone waits for,
    WAIT for routine updates, None when the caller took the slot); on failure audit SLACK_CALL_FAILED
    and raise SlackCallFailed."""
    if priority is not None:
        take_slot(ctx.settings, ctx.clock, method, priority, kwargs.get("channel"))
    return _call(ctx, actor, method, function, **kwargs)


def call_with_hash(
    ctx: Context,
    actor: str,
    method: str,
    function: Callable[..., SlackResponse],
    build: Callable[[], dict[str, Any]],
    view_hash: str | None,
    **kwargs: Any,
) -> SlackResponse | None:
    """views.update / views.publish of `build()`, on condition that the shown view is still `view_hash`.

    Slack answers `hash_conflict` when another call changed the view since: its content may be newer
    than this build, so the view is built again now and sent unconditionally. None when Slack refused
    (audited).
    """
    try:
        view = build()
        if view_hash:
            return call(ctx, actor, method, function, view=view, hash=view_hash, **kwargs)
        return call(ctx, actor, method, function, view=view, **kwargs)
    except SlackCallFailed as failure:
        if failure.error != "hash_conflict" or not view_hash:
            return None
    with contextlib.suppress(SlackCallFailed):
        return call(ctx, actor, method, function, view=build(), **kwargs)
    return None


def call_unless_busy(
    ctx: Context, actor: str, method: str, function: Callable[..., SlackResponse], **kwargs: Any
) -> SlackResponse | None:
    """`call` if the budget has a slot free now, else None: for an update the next one supersedes."""
    if not take_slot(ctx.settings, ctx.clock, method, Priority.SKIP, kwargs.get("channel")):
        return None
    return _call(ctx, actor, method, function, **kwargs)


def _call(
    ctx: Context, actor: str, method: str, function: Callable[..., SlackResponse], **kwargs: Any
) -> SlackResponse:
    try:
        return function(**kwargs)
    except (SlackClientError, URLError, OSError) as error:
        code = error_code(error)
        log.warning("Slack %s failed: %s", method, code)
        target = kwargs.get("channel") or kwargs.get("user")
        record_now(ctx.sessions, actor, AuditAction.SLACK_CALL_FAILED, target, method=method, error=code)
        raise SlackCallFailed(method, code) from error


def call_or_tell(
    ctx: Context,
    client: WebClient,
    user_id: str,
    channel_id: str | None,
    failed: str,
    method: str,
    function: Callable[..., SlackResponse],
    *,
    response_url: str | None = None,
    **kwargs: Any,
) -> SlackResponse | None:
    """`call` on the admin's behalf; if Slack refuses, tell them "`failed`: why" and return None."""
    try:
        return call(ctx, slack_actor(user_id), method, function, **kwargs)
    except SlackCallFailed as failure:
        text = f"{failed}: {failure.explanation}"
        tell_user(ctx, client, user_id, channel_id, text, response_url=response_url)
        return None


def tell_user(
    ctx: Context,
    client: WebClient,
    user_id: str,
    channel_id: str | None,
    text: str,
    *,
    response_url: str | None = None,
) -> bool:
    """Show `text` to the user only: through the request's `response_url` when there is one (it answers
    in any conversation, private channels and other people's DMs included), else ephemeral in
    `channel_id`, else (or if those fail) in a DM.

    Returns False when none worked (every failure is audited).
    """
    actor = slack_actor(user_id)
    if response_url and respond(ctx, actor, response_url, text):
        return True
    if channel_id:
        try:
            call(
                ctx,
                actor,
                "chat.postEphemeral",
                client.chat_postEphemeral,
                channel=channel_id,
                user=user_id,
                text=text,
            )
            return True
        except SlackCallFailed:
            pass
    try:
        call(ctx, actor, "chat.postMessage", client.chat_postMessage, channel=user_id, text=text)
        return True
    except SlackCallFailed:
        return False


def respond(ctx: Context, actor: str, response_url: str, text: str) -> bool:
    """Post `text` (ephemeral) to a request's response_url; False (audited) when Slack refuses it (it
    takes five posts within 30 minutes)."""
    try:
        answer = WebhookClient(response_url, timeout=SLACK_TIMEOUT_SECONDS).send(
            text=text, response_type="ephemeral"
        )
        error = None if answer.status_code == 200 else f"HTTP {answer.status_code} {answer.body}"
    except (SlackClientError, URLError, OSError) as failure:  # SlackRequestError: not a URL Slack gave
        error = type(failure).__name__
    if error:
        log.warning("Slack response_url failed: %s", error)
        record_now(
            ctx.sessions, actor, AuditAction.SLACK_CALL_FAILED, None, method="response_url", error=error
        )
    return error is None


@contextmanager
def errors_told(
    ctx: Context,
    client: WebClient,
    user_id: str,
    channel_id: str | None,
    doing: str,
    response_url: str | None = None,
) -> Iterator[None]:
    """Run background work; if it fails unexpectedly, log it and tell the admin instead of staying silent.

    (Bolt would only log an exception from work after the ack.)
    """
    try:
        yield
    except Exception:
        log.exception("unexpected error while %s", doing)
        tell_user(
            ctx,
            client,
            user_id,
            channel_id,
            f"Something went wrong on credbot's side while {doing}; the details are in its log. "
            "Nothing was sent. Please try again, or ask whoever runs credbot.",
            response_url=response_url,
        )
