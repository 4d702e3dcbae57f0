"""Modal submissions: "Review" (picker to confirmation), "Send emails" (confirmation to background send).

Both acks take the same short time whatever the selection's size: they answer with a small view at
once ("Preparing..." / "Sending started") and leave the database work to a lazy listener, which then
replaces the view (views.update) or sends. Only cheap checks happen before the ack: something chosen,
the confirmation not already sent.
"""

from __future__ import annotations

import contextlib
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.audit import slack_actor
from bot.context import Context
from bot.directory import change_email
from bot.selections import (
    SelectionNotFound,
    confirmed_addresses,
    load_selection,
    save_selection,
    selection_id,
)
from bot.sending.batches import DuplicateBatchError, batch_with_key, start_batch
from bot.sending.jobs import enqueue_batch
from bot.sending.recipients import never_emailed_employee_ids, normalise_address, preview
from handlers import ids
from handlers.delivery_messages import FixState
from handlers.slack_calls import SlackCallFailed, call, errors_told, tell_user
from handlers.views_credentials import (
    FlowState,
    already_sent_view,
    confirm_view,
    message_view,
    preparing_view,
    sending_view,
)

EXPIRED_TEXT = "This confirmation is no longer valid. Please type `/email-credentials` again."
NOBODY_TEXT = "Nobody is left to email: everyone you picked has been emailed already. Nothing was sent."
REVIEW_KEY = "credbot_review"
BATCH_KEY = "credbot_batch"
"""Context keys through which an ack function hands its work to its lazy listener."""


def register(app: App, ctx: Context) -> None:
    def review(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        acknowledge_review(ack, body, context)

    def show_confirmation(context: BoltContext, client: WebClient) -> None:
        if review := context.get(REVIEW_KEY):
            channel_id = FlowState.load(review["metadata"]).channel_id
            with errors_told(ctx, client, review["user_id"], channel_id, "preparing the confirmation"):
                build_confirmation(ctx, client, **review)

    def confirm(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        acknowledge_send(ctx, ack, body, context)

    def send(context: BoltContext, client: WebClient) -> None:
        if batch := context.get(BATCH_KEY):
            with errors_told(ctx, client, batch["user_id"], batch["channel_id"], "starting to send"):
                start_and_send(ctx, client, **batch)

    def fix_address(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        acknowledge_fix_address(ctx, ack, body, context)

    app.view(ids.PICKER_VIEW)(ack=review, lazy=[show_confirmation])
    app.view(ids.CONFIRM_VIEW)(ack=confirm, lazy=[send])
    app.view(ids.FIX_ADDRESS_VIEW)(fix_address)


def acknowledge_review(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """Refuse an empty choice under the picker; otherwise show "Preparing..." and hand over the choice."""
    form = context.get("form", {})
    picked = [int(value) for value in form.get(ids.EMPLOYEES_ACTION) or [] if str(value).isdigit()]
    presets = [str(value) for value in form.get(ids.PRESETS_ACTION) or []]
    if not picked and not presets:
        ack(
            response_action="errors",
            errors={ids.EMPLOYEES_BLOCK: "Pick at least one employee, or tick a box."},
        )
        return
    context[REVIEW_KEY] = {
        "user_id": str(context.user_id),
        "view_id": body["view"]["id"],
        "metadata": body["view"].get("private_metadata", ""),
        "picked": picked,
        "presets": presets,
    }
    ack(response_action="update", view=preparing_view(len(picked), presets))


def chosen_employee_ids(
    ctx: Context, user_id: str, state: FlowState, picked: list[int], presets: list[str]
) -> list[int]:
    """The picked employees, plus the command's list and "everyone never emailed" when ticked."""
    chosen = list(picked)
    with ctx.sessions() as session:
        if ids.PRESET_FROM_COMMAND in presets and state.selection:
            chosen += load_selection(session, state.selection, slack_actor(user_id))
        if ids.PRESET_NEVER_EMAILED in presets:
            chosen += never_emailed_employee_ids(session)
    return list(dict.fromkeys(chosen))


def build_confirmation(
    ctx: Context,
    client: WebClient,
    user_id: str,
    view_id: str,
    metadata: str,
    picked: list[int],
    presets: list[str],
) -> None:
    """Preview every chosen employee, save the list, and replace "Preparing..." with the confirmation."""
    state = FlowState.load(metadata)
    try:
        employee_ids = chosen_employee_ids(ctx, user_id, state, picked, presets)
    except SelectionNotFound:
        view = message_view("Email credentials", EXPIRED_TEXT)
    else:
        if employee_ids:
            view = review_view(ctx, user_id, state.channel_id, employee_ids)
        else:
            view = message_view("Email credentials", NOBODY_TEXT)
    try:
        call(ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view)
    except SlackCallFailed as failure:
        tell_user(
            ctx,
            client,
            user_id,
            state.channel_id,
            f"I could not show the confirmation: {failure.explanation}",
        )


def review_view(
    ctx: Context, user_id: str, channel_id: str | None, employee_ids: list[int]
) -> dict[str, Any]:
    """The confirmation for `employee_ids`, saved as the admin's selection; "Send emails" then sends.

    Every way to send goes through it: the picker's "Review", and "Fix address and resend" and "Resend"
    on a bounced, dropped or blocked employee.
    """
    with ctx.sessions() as session:
        recipients = preview(session, employee_ids)
    reference = save_selection(
        ctx.sessions,
        slack_actor(user_id),
        [r.employee_id for r in recipients],
        "review",
        addresses={r.employee_id: r.address for r in recipients},  # what the admin confirms
    )
    state = FlowState(channel_id=channel_id, selection=reference)
    return confirm_view(recipients, ctx.settings.credential_mode, state)


def acknowledge_fix_address(ctx: Context, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """Check the corrected address (an error under the field), update the directory, show the confirmation."""
    user_id = str(context.user_id)
    state = FixState.load(body["view"].get("private_metadata"))
    if state is None:
        ack(response_action="update", view=message_view("Fix address", EXPIRED_TEXT))
        return
    address, problem = normalise_address(context.get("form", {}).get(ids.ADDRESS_ACTION))
    if problem or address is None:
        ack(
            response_action="errors",
            errors={ids.ADDRESS_BLOCK: f"Not an address credbot can mail: {problem}"},
        )
        return
    change_email(ctx.sessions, state.employee_id, address, slack_actor(user_id), "fix address and resend")
    ack(response_action="update", view=review_view(ctx, user_id, state.channel_id, [state.employee_id]))


def idempotency_key(state: FlowState) -> str:
    """One batch per reviewed selection: a double click or a retried request sends once."""
    return f"slack-selection:{selection_id(state.selection or '')}"


def acknowledge_send(ctx: Context, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """Answer "Sending started" (or "Already sent") at once; the batch is committed by `start_and_send`."""
    user_id = str(context.user_id)
    state = FlowState.load(body["view"].get("private_metadata"))
    try:
        with ctx.sessions() as session:
            load_selection(session, state.selection or "", slack_actor(user_id))  # it exists and is theirs
            existing = batch_with_key(session, idempotency_key(state))
    except SelectionNotFound:
        ack(response_action="update", view=message_view("Email credentials", EXPIRED_TEXT))
        return
    if existing is not None:
        ack(response_action="update", view=already_sent_view(existing))
        return
    channel_id = ctx.settings.audit_channel_id or state.channel_id
    context[BATCH_KEY] = {
        "user_id": user_id,
        "view_id": body["view"]["id"],
        "channel_id": channel_id,
        "selection": state.selection,
    }
    ack(response_action="update", view=sending_view(channel_id))


def start_and_send(
    ctx: Context, client: WebClient, user_id: str, view_id: str, channel_id: str | None, selection: str
) -> None:
    """Commit the batch (once per selection) with the addresses the admin confirmed, and hand it to a
    worker, which sends it with its audit trail in the channel."""
    state = FlowState(channel_id=channel_id, selection=selection)
    try:
        with ctx.sessions() as session:
            employee_ids = load_selection(session, selection, slack_actor(user_id))
            confirmed = confirmed_addresses(session, selection, slack_actor(user_id))
        batch_id = start_batch(
            ctx,
            employee_ids,
            actor=slack_actor(user_id),
            source="slack",
            channel_id=channel_id,
            idempotency_key=idempotency_key(state),
            confirmed=confirmed,
        )
    except DuplicateBatchError as duplicate:  # the other of two simultaneous submissions is sending
        view = already_sent_view(duplicate.batch_id)
    except SelectionNotFound:
        view = message_view("Email credentials", EXPIRED_TEXT)
    else:
        enqueue_batch(ctx, batch_id, "slack")
        return
    # The modal may be closed by now: a failure is audited, and nothing was sent twice.
    with contextlib.suppress(SlackCallFailed):
        call(ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view)
