"""The account report as a CSV file in the admin's DM (App Home's button, `/email-credentials report`).

The CSV is streamed from the database into a temporary file, then handed to `files_upload_v2`. That
method shares files only in channels and DMs by their `D...` id, not to a user id, so a short message
to the admin comes first: its answer names the DM (which needs no `im:write` scope).
"""

from __future__ import annotations

import tempfile

from slack_sdk import WebClient

from bot.account_report import CSV_ENCODING, write_accounts_csv
from bot.audit import AuditAction, record_now, slack_actor
from bot.context import Context
from handlers.slack_calls import SlackCallFailed, call, tell_user
from models import utcnow


def send_account_report(
    ctx: Context,
    client: WebClient,
    user_id: str,
    channel_id: str | None = None,
    response_url: str | None = None,
) -> None:
    """Build the account report and upload it to the admin's DM; tell them if Slack refuses (through the
    command's `response_url` when there is one)."""
    who = slack_actor(user_id)
    now = utcnow()
    filename = f"credbot-accounts-{now:%Y%m%d-%H%M}.csv"
    with tempfile.NamedTemporaryFile("w+", newline="", encoding=CSV_ENCODING, suffix=".csv") as out:
        with ctx.sessions() as session:
            count = write_accounts_csv(session, out, now)
        out.flush()
        try:
            posted = call(
                ctx,
                who,
                "chat.postMessage",
                client.chat_postMessage,
                channel=user_id,
                text=f":bar_chart: The account report: {count:,} accounts, as of {now:%Y-%m-%d %H:%M} UTC.",
            )
            call(
                ctx,
                who,
                "files.upload_v2",
                client.files_upload_v2,
                channel=posted["channel"],
                file=out.name,
                filename=filename,
                title=f"credbot accounts {now:%Y-%m-%d %H:%M} UTC",
            )
        except SlackCallFailed as failure:
            tell_user(
                ctx,
                client,
                user_id,
                channel_id,
                f"I could not send the account report: {failure.explanation}",
                response_url=response_url,
            )
            return
    record_now(ctx.sessions, who, AuditAction.ACCOUNTS_REPORTED, filename, accounts=count, via="slack")
