"""`/email-credentials [pending | employee numbers or emails | report | help]`: ack at once, then act."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.audit import slack_actor
from bot.context import Context
from bot.search import choices_for
from bot.selections import save_selection
from bot.sending.recipients import count_never_emailed, resolve_employees
from handlers import ids
from handlers.report_upload import send_account_report
from handlers.slack_calls import SlackCallFailed, call, errors_told, tell_user
from handlers.views_credentials import PICKER_LIMIT, FlowState, picker_view

MAILTO = re.compile(r"<mailto:([^|>]+)(?:\|[^>]*)?>")
PENDING_WORDS = frozenset({"pending", "never-emailed", "all-pending"})
HELP_TEXT = """*`/email-credentials`* (credbot admins only) accepts:
• nothing: opens the window to pick employees and email them their Self-Service credentials
• `pending`: the same, with everyone never emailed ticked
• employee numbers or email addresses, separated by spaces or commas: the same, with them picked
• `report`: sends you the account report as a CSV file in a direct message
• `help`: this list
Open credbot's *Home* tab for the state of onboarding: who needs an account, an email, a resend or an \
unlock, renames, roles and the report."""
REPORT_TEXT = ":hourglass_flowing_sand: Building the account report; it arrives in a direct message from me."


def parse_command_text(text: str) -> tuple[bool, list[str]]:
    """(`pending` was given, the other words): keys are separated by spaces, commas or semicolons."""
    text = MAILTO.sub(r"\1", text)  # Slack may send an address as <mailto:a@b.example|a@b.example>
    words = [word for word in re.split(r"[\s,;]+", text.strip()) if word]
    pending = any(word.lower() in PENDING_WORDS for word in words)
    keys = [word for word in words if word.lower() not in PENDING_WORDS]
    return pending, list(dict.fromkeys(keys))


def subcommand(text: str) -> str | None:
    """`help` or `report` when the command's text is just that word."""
    word = text.strip().lower()
    return word if word in ("help", "report") else None


def register(app: App, ctx: Context) -> None:
    def acknowledge(ack: Ack, body: dict[str, Any]) -> None:
        match subcommand(body.get("text", "")):
            case "help":
                ack(response_type="ephemeral", text=HELP_TEXT)
            case "report":
                ack(response_type="ephemeral", text=REPORT_TEXT)
            case _:
                ack()

    def open_picker(body: dict[str, Any], client: WebClient) -> None:
        user_id, channel_id = body["user_id"], body.get("channel_id")
        if subcommand(body.get("text", "")) == "report":
            with errors_told(ctx, client, user_id, channel_id, "building the account report"):
                send_account_report(ctx, client, user_id, channel_id)
            return
        if subcommand(body.get("text", "")):
            return
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
        reference = save_selection(ctx.sessions, slack_actor(user_id), employee_ids, "command")
    view = picker_view(
        FlowState(channel_id=channel_id, selection=reference),
        preselected=preselected,
        never_emailed_count=never_emailed,
        never_emailed_checked=pending,
        from_command_count=len(employee_ids) if reference else 0,
        unknown_keys=unknown_keys,
    )
    try:
        call(ctx, slack_actor(user_id), "views.open", client.views_open, trigger_id=trigger_id, view=view)
    except SlackCallFailed as failure:
        tell_user(
            ctx,
            client,
            user_id,
            channel_id,
            f"I could not open the credentials window: {failure.explanation}",
        )
