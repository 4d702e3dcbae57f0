"""`/email-credentials [pending | employee numbers or emails | report | help]`: ack at once, then act.

What the command says later (a window that would not open, a report Slack refused) goes through its
`response_url`, which answers in every conversation; chat.postEphemeral fails where the bot is not a
member.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.context import Context
from bot.lookup import resolve_employees
from handlers import ids
from handlers.background import Background
from handlers.credentials_flow import open_picker_modal
from handlers.report_upload import send_account_report

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


def register(app: App) -> None:
    app.command(ids.COMMAND)(email_credentials)


def email_credentials(ack: Ack, body: dict[str, Any], background: Background) -> None:
    """Answer help and report at once; otherwise ack, then open the picker (or build the report)."""
    user_id, channel_id, text = body["user_id"], body.get("channel_id"), body.get("text", "")
    match subcommand(text):
        case "help":
            ack(response_type="ephemeral", text=HELP_TEXT)
        case "report":
            ack(response_type="ephemeral", text=REPORT_TEXT)
            background.start(
                "building the account report",
                user_id,
                channel_id,
                send_account_report,
                user_id,
                channel_id,
                body.get("response_url"),
            )
        case _:
            ack()
            background.start("opening the credentials window", user_id, channel_id, open_from_command, body)


def open_from_command(ctx: Context, client: WebClient, body: dict[str, Any]) -> None:
    """Open the picker with the command's employees (and "never emailed" if asked) preselected."""
    pending, keys = parse_command_text(body.get("text", ""))
    with ctx.sessions() as session:
        resolved = resolve_employees(session, keys)
    employee_ids, unknown = resolved.ids, resolved.not_found
    open_picker_modal(
        ctx,
        client,
        user_id=body["user_id"],
        channel_id=body.get("channel_id"),
        trigger_id=body["trigger_id"],
        employee_ids=employee_ids,
        unknown_keys=unknown,
        pending=pending,
        response_url=body.get("response_url"),
    )
