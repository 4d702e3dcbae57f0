"""`/email-credentials [pending | employee numbers or emails]`: ack at once, then open the picker."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.context import Context
from bot.search import choices_for
from bot.selections import save_selection
from bot.sending.recipients import count_never_emailed, resolve_employees
from handlers import ids
from handlers.middleware import actor
from handlers.notify import SlackCallFailed, call, errors_told, tell_user
from handlers.views_credentials import PICKER_LIMIT, FlowState, picker_view

MAILTO = re.compile(r"<mailto:([^|>]+)(?:\|[^>]*)?>")
PENDING_WORDS = frozenset({"pending", "never-emailed", "all-pending"})


def parse_command_text(text: str) -> tuple[bool, list[str]]:
    """(`pending` was given, the other words): keys are separated by spaces, commas or semicolons."""
    text = MAILTO.sub(r"\1", text)  # Slack may send an address as <mailto:a@b.example|a@b.example>
    words = [word for word in re.split(r"[\s,;]+", text.strip()) if word]
    pending = any(word.lower() in PENDING_WORDS for word in words)
    keys = [word for word in words if word.lower() not in PENDING_WORDS]
    return pending, list(dict.fromkeys(keys))


def register(app: App, ctx: Context) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    def open_picker(body: dict[str, Any], client: WebClient) -> None:
        user_id, channel_id = body["user_id"], body.get("channel_id")
        with errors_told(ctx, client, user_id, channel_id, "opening the credentials window"):
            pending, keys = parse_command_text(body.get("text", ""))
            with ctx.sessions() as session:
                employee_ids, unknown = resolve_employees(session, keys) if keys else ([], [])
            open_picker_modal(
                ctx,
                client,
                user_id=user_id,
                channel_id=channel_id,
                trigger_id=body["trigger_id"],
                employee_ids=employee_ids,
                unknown_keys=unknown,
                pending=pending,
            )

    app.command(ids.COMMAND)(ack=acknowledge, lazy=[open_picker])


def open_picker_modal(
    ctx: Context,
    client: WebClient,
    *,
    user_id: str,
    channel_id: str | None,
    trigger_id: str,
    employee_ids: Sequence[int] = (),
    unknown_keys: Sequence[str] = (),
    pending: bool = False,
) -> None:
    """Open the picker with `employee_ids` preselected; tell the admin (and audit) if Slack refuses."""
    employee_ids = list(dict.fromkeys(employee_ids))
    with ctx.sessions() as session:
        never_emailed = count_never_emailed(session)
        preselected = choices_for(session, employee_ids) if len(employee_ids) <= PICKER_LIMIT else []
    reference = None
    if len(employee_ids) > PICKER_LIMIT:
        reference = save_selection(ctx.sessions, actor(user_id), employee_ids, "command")
    view = picker_view(
        FlowState(channel_id=channel_id, selection=reference),
        preselected=preselected,
        never_emailed_count=never_emailed,
        never_emailed_checked=pending,
        from_command_count=len(employee_ids) if reference else 0,
        unknown_keys=unknown_keys,
    )
    try:
        call(ctx, actor(user_id), "views.open", client.views_open, trigger_id=trigger_id, view=view)
    except SlackCallFailed as failure:
        tell_user(
            ctx,
            client,
            user_id,
            channel_id,
            f"I could not open the credentials window: {failure.explanation}",
        )
