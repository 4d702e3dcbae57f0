"""Buttons: "Pick the failed again" on a batch summary reopens the picker with those employees; "Fix address
and resend" and "Resend" on a bounced, dropped or blocked employee lead to the normal confirmation; "Use
work/personal address" on the confirmation switches one employee's address; "Cancel" on a scheduled
batch cancels what is not yet sent."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.audit import slack_actor
from bot.context import Context
from bot.delivery_events import delivery_problem
from bot.selections import SelectionNotFound, confirmed_switches, load_selection
from bot.sending.batches import failed_employee_ids
from handlers import ids
from handlers.background import Background, clicked_by
from handlers.credentials_flow import open_picker_modal, review_view
from handlers.delivery_messages import FixState, fix_address_view
from handlers.scheduled import cancel_from_slack
from handlers.slack_calls import call_or_tell, tell_user
from handlers.views_credentials import EXPIRED_TEXT, FlowState, message_view


def register(app: App) -> None:
    app.action(ids.RETRY_FAILED_ACTION)(retry_failed)
    app.action(ids.FIX_ADDRESS_ACTION)(fix_address)
    app.action(ids.RESEND_ACTION)(resend)
    app.action(ids.SWITCH_ADDRESS_ACTION)(switch_address)
    app.action(ids.CANCEL_BATCH_ACTION)(cancel_batch)


def retry_failed(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("opening the credentials window", user_id, channel_id, reopen_failed, body)


def fix_address(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("opening the window", user_id, channel_id, open_for_delivery, body, fix=True)


def resend(ack: Ack, body: dict[str, Any], background: Background) -> None:
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("opening the window", user_id, channel_id, open_for_delivery, body, fix=False)


def cancel_batch(ack: Ack, body: dict[str, Any], background: Background) -> None:
    """Cancel on a scheduled batch's message or in App Home: what is not yet sent is cancelled."""
    ack()
    user_id, channel_id = clicked_by(body)
    background.start("cancelling the batch", user_id, channel_id, cancel_from_slack, body)


def reopen_failed(ctx: Context, client: WebClient, body: dict[str, Any]) -> None:
    """Open the picker with the batch's failed employees preselected."""
    user_id, channel_id = clicked_by(body)
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


def open_for_delivery(ctx: Context, client: WebClient, body: dict[str, Any], *, fix: bool) -> None:
    """Open the fix-address modal (`fix`) or straight the confirmation for the button's employee."""
    user_id, channel_id = clicked_by(body)
    value = str(body["actions"][0].get("value", ""))
    with ctx.sessions() as session:
        found = delivery_problem(session, int(value)) if value.isdigit() else None
    if found is None:
        tell_user(ctx, client, user_id, channel_id, "I cannot find that employee's delivery any more.")
        return
    problem, current_address = found
    if fix:
        state = FixState(problem.employee_id, channel_id)
        view = fix_address_view(problem.name, problem.employee_number, current_address, problem.reason, state)
    else:
        view = review_view(ctx, user_id, channel_id, [problem.employee_id])
    call_or_tell(
        ctx,
        client,
        user_id,
        channel_id,
        "I could not open the window",
        "views.open",
        client.views_open,
        trigger_id=body["trigger_id"],
        view=view,
    )


def switch_address(ack: Ack, body: dict[str, Any], background: Background) -> None:
    """A "Use work/personal address" button on the confirmation: show it again with that employee switched."""
    ack()
    user_id = body["user"]["id"]
    channel_id = FlowState.load((body.get("view") or {}).get("private_metadata")).channel_id
    background.start("switching the address", user_id, channel_id, show_switched, body)


def show_switched(ctx: Context, client: WebClient, body: dict[str, Any]) -> None:
    """Save the selection again with the switch (a new reference: what the admin confirms is what they saw
    last) and replace the confirmation."""
    user_id, view = body["user"]["id"], body.get("view") or {}
    state = FlowState.load(view.get("private_metadata"))
    employee, _, kind = str(body["actions"][0].get("value", "")).partition(":")
    try:
        with ctx.sessions() as session:
            employee_ids = load_selection(session, state.selection or "", slack_actor(user_id))
            switches = confirmed_switches(session, state.selection or "", slack_actor(user_id))
    except SelectionNotFound:
        updated = message_view("Email credentials", EXPIRED_TEXT)
    else:
        if employee.isdigit() and int(employee) in employee_ids and kind in ("work", "personal"):
            switches[int(employee)] = kind
        updated = review_view(ctx, user_id, state.channel_id, employee_ids, switches)
    call_or_tell(
        ctx,
        client,
        user_id,
        state.channel_id,
        "I could not switch the address",
        "views.update",
        client.views_update,
        view_id=view.get("id"),
        view=updated,
    )
