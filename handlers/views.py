"""Modal submissions: "Review" (picker to confirmation), "Send emails" (confirmation to background send)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.context import Context
from bot.credentials import DuplicateBatchError, never_emailed_employee_ids, preview, start_batch
from bot.selections import SelectionNotFound, load_selection, save_selection, selection_id
from bot.slack_audit import delivery_counts
from handlers import ids
from handlers.middleware import actor
from handlers.sending import send_in_background
from handlers.views_credentials import (
    FlowState,
    already_sent_view,
    confirm_view,
    message_view,
    sending_view,
)
from models import DeliveryStatus

EXPIRED_TEXT = "This confirmation is no longer valid. Please type `/email-credentials` again."
BATCH_KEY = "credbot_batch"
"""Context key through which the "Send emails" ack function hands the started batch to its lazy listener."""


def register(app: App, ctx: Context) -> None:
    def review(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        review_selection(ctx, ack, body, context)

    def confirm(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        start_sending(ctx, ack, body, context)

    def send(context: BoltContext, client: WebClient) -> None:
        started = context.get(BATCH_KEY)
        if started:
            send_in_background(ctx, client, started["user_id"], started["channel_id"], started["batch_id"])

    app.view(ids.PICKER_VIEW)(review)
    app.view(ids.CONFIRM_VIEW)(ack=confirm, lazy=[send])


def picked_employee_ids(ctx: Context, form: dict[str, Any], state: FlowState, user_id: str) -> list[int]:
    """The picker's employees, plus "everyone never emailed" and the command's list when ticked."""
    picked = [int(value) for value in form.get(ids.EMPLOYEES_ACTION) or [] if str(value).isdigit()]
    presets = set(form.get(ids.PRESETS_ACTION) or [])
    with ctx.sessions() as session:
        if ids.PRESET_FROM_COMMAND in presets and state.selection:
            picked += load_selection(session, state.selection, actor(user_id))
        if ids.PRESET_NEVER_EMAILED in presets:
            picked += never_emailed_employee_ids(session)
    return list(dict.fromkeys(picked))


def review_selection(ctx: Context, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """Answer "Review" with the confirmation view (or an error under the picker)."""
    user_id = str(context.user_id)
    state = FlowState.load(body["view"].get("private_metadata"))
    try:
        employee_ids = picked_employee_ids(ctx, context.get("form", {}), state, user_id)
    except SelectionNotFound:
        ack(response_action="update", view=message_view("Email credentials", EXPIRED_TEXT))
        return
    if not employee_ids:
        ack(
            response_action="errors",
            errors={ids.EMPLOYEES_BLOCK: "Pick at least one employee, or tick a box."},
        )
        return
    with ctx.sessions() as session:
        recipients = preview(session, employee_ids)
    reference = save_selection(ctx.sessions, actor(user_id), [r.employee_id for r in recipients], "review")
    state = FlowState(channel_id=state.channel_id, selection=reference)
    ack(response_action="update", view=confirm_view(recipients, ctx.settings.credential_mode, state))


def start_sending(ctx: Context, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """Commit the batch (once per reviewed selection), answer "Sending started", leave the rest to `send`."""
    user_id = str(context.user_id)
    state = FlowState.load(body["view"].get("private_metadata"))
    try:
        if not state.selection:
            raise SelectionNotFound("no selection")
        with ctx.sessions() as session:
            employee_ids = load_selection(session, state.selection, actor(user_id))
    except SelectionNotFound:
        ack(response_action="update", view=message_view("Email credentials", EXPIRED_TEXT))
        return
    channel_id = ctx.settings.audit_channel_id or state.channel_id
    try:
        batch_id = start_batch(
            ctx,
            employee_ids,
            actor=actor(user_id),
            source="slack",
            channel_id=channel_id,
            idempotency_key=f"slack-selection:{selection_id(state.selection)}",
        )
    except DuplicateBatchError as duplicate:
        ack(response_action="update", view=already_sent_view(duplicate.batch_id))
        return
    with ctx.sessions() as session:
        to_send = delivery_counts(session, batch_id)[DeliveryStatus.PENDING]
    context[BATCH_KEY] = {"batch_id": batch_id, "user_id": user_id, "channel_id": channel_id}
    ack(response_action="update", view=sending_view(batch_id, to_send, channel_id))
