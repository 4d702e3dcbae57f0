"""Buttons: "Pick the failed again" on a batch summary reopens the picker with those employees."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.context import Context
from bot.slack_audit import failed_employee_ids
from handlers import ids
from handlers.commands import open_picker_modal
from handlers.notify import errors_told


def register(app: App, ctx: Context) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    def reopen_failed(body: dict[str, Any], client: WebClient) -> None:
        user_id, channel_id = body["user"]["id"], (body.get("channel") or {}).get("id")
        with errors_told(ctx, client, user_id, channel_id, "opening the credentials window"):
            value = str(body["actions"][0].get("value", ""))
            with ctx.sessions() as session:
                employee_ids = failed_employee_ids(session, int(value) if value.isdigit() else 0)
            open_picker_modal(
                ctx,
                client,
                user_id=user_id,
                channel_id=channel_id,
                trigger_id=body["trigger_id"],
                employee_ids=employee_ids,
            )

    app.action(ids.RETRY_FAILED_ACTION)(ack=acknowledge, lazy=[reopen_failed])
