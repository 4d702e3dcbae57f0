"""Slack calls that may fail: every failure is audited, and the admin is told in words."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from bot.audit import AuditAction, record_now, slack_actor
from bot.context import Context

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
    ctx: Context, actor: str, method: str, function: Callable[..., SlackResponse], **kwargs: Any
) -> SlackResponse:
    """`function(**kwargs)`; on failure audit SLACK_CALL_FAILED and raise SlackCallFailed."""
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
    **kwargs: Any,
) -> SlackResponse | None:
    """`call` on the admin's behalf; if Slack refuses, tell them "`failed`: why" and return None."""
    try:
        return call(ctx, slack_actor(user_id), method, function, **kwargs)
    except SlackCallFailed as failure:
        tell_user(ctx, client, user_id, channel_id, f"{failed}: {failure.explanation}")
        return None


def tell_user(ctx: Context, client: WebClient, user_id: str, channel_id: str | None, text: str) -> bool:
    """Show `text` to the user only: ephemeral in `channel_id`, else (or if that fails) in a DM.

    Returns False when neither worked (both failures are audited).
    """
    actor = slack_actor(user_id)
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


@contextmanager
def errors_told(
    ctx: Context, client: WebClient, user_id: str, channel_id: str | None, doing: str
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
        )
