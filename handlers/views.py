"""Modal submissions: "Review" (picker to confirmation), "Send emails" (confirmation to background send).

Both acks take the same short time whatever the selection's size: they answer with a small view at
once ("Preparing..." / "Sending started") and start the database work in the background, which then
replaces the view (views.update) or sends. Only cheap checks happen before the ack: something chosen,
the confirmation not already sent.
"""

from __future__ import annotations

import contextlib
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.audit import slack_actor
from bot.context import Context
from bot.directory import AddressTaken, change_email
from bot.selections import (
    SelectionNotFound,
    confirmed_addresses,
    confirmed_bypass,
    confirmed_emailed,
    load_selection,
    selection_id,
)
from bot.sending import schedule
from bot.sending.batches import DuplicateBatchError, batch_with_key
from bot.sending.jobs import schedule_and_enqueue, start_and_enqueue
from bot.sending.recipients import never_emailed_employee_ids, normalise_address
from bot.sending.schedule import Schedule
from handlers import ids
from handlers.background import Background
from handlers.credentials_flow import review_view
from handlers.delivery_messages import FixState
from handlers.scheduled import announce
from handlers.slack_calls import SlackCallFailed, call, call_or_tell, tell_user
from handlers.views_credentials import (
    EXPIRED_TEXT,
    FlowState,
    already_sent_view,
    message_view,
    preparing_view,
    queued_text,
    queued_view,
    sending_view,
)
from handlers.views_schedule import chosen_schedule, scheduled_view_text, scheduling_view
from models import BatchSource

NOBODY_TEXT = "Nobody is left to email: everyone you picked has been emailed already. Nothing was sent."


def register(app: App) -> None:
    app.view(ids.PICKER_VIEW)(review)
    app.view(ids.CONFIRM_VIEW)(confirm)
    app.view(ids.FIX_ADDRESS_VIEW)(fix_address)


def review(
    ack: Ack, body: dict[str, Any], form: dict[str, Any], user_id: str, background: Background
) -> None:
    """Refuse an empty choice under the picker; otherwise show "Preparing..." and build the confirmation."""
    picked = [int(value) for value in form.get(ids.EMPLOYEES_ACTION) or [] if str(value).isdigit()]
    presets = [str(value) for value in form.get(ids.PRESETS_ACTION) or []]
    if not picked and not presets:
        ack(
            response_action="errors",
            errors={ids.EMPLOYEES_BLOCK: "Pick at least one employee, or tick a box."},
        )
        return
    ack(response_action="update", view=preparing_view(len(picked), presets))
    metadata = body["view"].get("private_metadata", "")
    channel_id = FlowState.load(metadata).channel_id
    background.start(
        "preparing the confirmation",
        user_id,
        channel_id,
        build_confirmation,
        user_id,
        body["view"]["id"],
        metadata,
        picked,
        presets,
    )


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
    call_or_tell(
        ctx,
        client,
        user_id,
        state.channel_id,
        "I could not show the confirmation",
        "views.update",
        client.views_update,
        view_id=view_id,
        view=view,
    )


def fix_address(ack: Ack, body: dict[str, Any], form: dict[str, Any], user_id: str, ctx: Context) -> None:
    """Check the corrected address (an error under the field), update the directory, show the confirmation."""
    state = FixState.load(body["view"].get("private_metadata"))
    if state is None:
        ack(response_action="update", view=message_view("Fix address", EXPIRED_TEXT))
        return
    address, problem = normalise_address(form.get(ids.ADDRESS_ACTION))
    if problem or address is None:
        ack(
            response_action="errors",
            errors={ids.ADDRESS_BLOCK: f"Not an address credbot can mail: {problem}"},
        )
        return
    try:
        change_email(ctx.sessions, state.employee_id, address, slack_actor(user_id), "fix address and resend")
    except AddressTaken as taken:
        ack(response_action="errors", errors={ids.ADDRESS_BLOCK: str(taken)})
        return
    ack(response_action="update", view=review_view(ctx, user_id, state.channel_id, [state.employee_id]))


def idempotency_key(state: FlowState) -> str:
    """One batch per reviewed selection: a double click or a retried request sends once."""
    return f"slack-selection:{selection_id(state.selection or '')}"


def confirm(
    ack: Ack, body: dict[str, Any], form: dict[str, Any], user_id: str, ctx: Context, background: Background
) -> None:
    """Answer "Sending started" (or "Already sent") at once; `start_and_send` then commits the batch.
    A schedule chosen under "When" is checked first (errors under its fields)."""
    state = FlowState.load(body["view"].get("private_metadata"))
    plan, errors = chosen_schedule(form, ctx.clock.now().date())
    if errors:
        ack(response_action="errors", errors=errors)
        return
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
    ack(response_action="update", view=sending_view(channel_id) if plan is None else scheduling_view())
    background.start(
        "starting to send",
        user_id,
        channel_id,
        start_and_send,
        user_id,
        body["view"]["id"],
        channel_id,
        state.selection or "",
        plan,
    )


def start_and_send(
    ctx: Context,
    client: WebClient,
    user_id: str,
    view_id: str,
    channel_id: str | None,
    selection: str,
    plan: Schedule | None = None,
) -> None:
    """Commit the batch (once per selection) with what the admin confirmed and the job that sends it,
    and hand the job to a worker, which sends it with its audit trail in the channel. With the job
    queue unreachable, the batch waits in the outbox and the admin is told so."""
    state = FlowState(channel_id=channel_id, selection=selection)
    try:
        with ctx.sessions() as session:
            employee_ids = load_selection(session, selection, slack_actor(user_id))
            confirmed = confirmed_addresses(session, selection, slack_actor(user_id))
            emailed = confirmed_emailed(session, selection, slack_actor(user_id))
            bypass = confirmed_bypass(session, selection, slack_actor(user_id))
        options: dict[str, Any] = {
            "channel_id": channel_id,
            "idempotency_key": idempotency_key(state),
            "confirmed": confirmed,
            "confirmed_emailed": emailed,
            "bypass_bounce_list": bypass,
        }
        if plan is not None:
            view = schedule_and_announce(ctx, client, user_id, employee_ids, plan, options)
            with contextlib.suppress(SlackCallFailed):  # the modal may be closed by now
                call(
                    ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view
                )
            return
        batch_id, queued = start_and_enqueue(
            ctx, employee_ids, slack_actor(user_id), BatchSource.SLACK, **options
        )
    except DuplicateBatchError as duplicate:  # the other of two simultaneous submissions is sending
        view = already_sent_view(duplicate.batch_id)
    except SelectionNotFound:
        view = message_view("Email credentials", EXPIRED_TEXT)
    else:
        if queued:
            return
        view = queued_view(batch_id)
        tell_user(ctx, client, user_id, channel_id, queued_text(batch_id))  # the modal may be closed
    # The modal may be closed by now: a failure is audited, and nothing was sent twice.
    with contextlib.suppress(SlackCallFailed):
        call(ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view)


def schedule_and_announce(
    ctx: Context,
    client: WebClient,
    user_id: str,
    employee_ids: list[int],
    plan: Schedule,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Commit the scheduled batch (each employee's moment as of now), post its message with the Cancel
    button in the channel; the view that says so."""
    with ctx.sessions() as session:
        confirmed = options["confirmed"]
        mailable = [i for i in employee_ids if confirmed is None or confirmed.get(i)]
        planned = schedule.moments(session, ctx.settings, plan, mailable, ctx.clock.now())
    line = schedule.summary_line(plan, planned)

    def post(batch_id: int) -> None:  # before the wake: a moment already due follows on this message
        announce(ctx, client, user_id, options["channel_id"], batch_id, line)

    actor = slack_actor(user_id)
    schedule_and_enqueue(
        ctx, employee_ids, actor, BatchSource.SLACK, plan, planned, before_wake=post, **options
    )
    return message_view("Scheduled", scheduled_view_text(options["channel_id"], line))
