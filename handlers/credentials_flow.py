"""The steps of the email-credentials flow that several listeners take: opening the picker (the command,
"Pick the failed again", App Home's buttons) and building the confirmation (the picker's "Review", "Fix
address and resend", "Resend")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk import WebClient

from bot.audit import slack_actor
from bot.context import Context
from bot.search import choices_for
from bot.selections import save_selection
from bot.sending import schedule
from bot.sending.addresses import AddressRule
from bot.sending.recipients import count_never_emailed, preview, with_suppressions
from bot.sending.schedule import Schedule, When
from handlers.blocks import MAX_PICKED, Block
from handlers.slack_calls import call_or_tell
from handlers.views_credentials import FlowState, confirm_view, picker_view
from handlers.views_schedule import when_blocks


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
    response_url: str | None = None,
) -> None:
    """Open the picker with `employee_ids` preselected; tell the admin (and audit) if Slack refuses,
    through `response_url` when the picker was asked for by a command."""
    employee_ids = list(dict.fromkeys(employee_ids))
    with ctx.sessions() as session:
        never_emailed = count_never_emailed(session)
        preselected = choices_for(session, employee_ids) if len(employee_ids) <= MAX_PICKED else []
    reference = None
    if len(employee_ids) > MAX_PICKED:
        reference = save_selection(ctx.sessions, slack_actor(user_id), employee_ids, "command")
    view = picker_view(
        FlowState(channel_id=channel_id, selection=reference),
        preselected=preselected,
        never_emailed_count=never_emailed,
        never_emailed_checked=pending,
        from_command_count=len(employee_ids) if reference else 0,
        unknown_keys=unknown_keys,
    )
    call_or_tell(
        ctx,
        client,
        user_id,
        channel_id,
        "I could not open the credentials window",
        "views.open",
        client.views_open,
        response_url=response_url,
        trigger_id=trigger_id,
        view=view,
    )


def open_review(
    ctx: Context,
    client: WebClient,
    user_id: str,
    channel_id: str | None,
    trigger_id: str,
    employee_ids: list[int],
    when: When = When.NOW,
) -> None:
    """Open the confirmation (`review_view`) in a modal, from a button elsewhere (a recovery card, a SCIM
    notice); the admin is told in Slack if it cannot open."""
    view = review_view(ctx, user_id, channel_id, employee_ids, when=when)
    call_or_tell(
        ctx,
        client,
        user_id,
        channel_id,
        "I could not open the confirmation",
        "views.open",
        client.views_open,
        trigger_id=trigger_id,
        view=view,
    )


def review_view(
    ctx: Context,
    user_id: str,
    channel_id: str | None,
    employee_ids: list[int],
    switches: Mapping[int, str] | None = None,
    when: When = When.NOW,
) -> dict[str, Any]:
    """The confirmation for `employee_ids`, saved as the admin's selection; "Send emails" then sends.

    Every way to send goes through it: the picker's "Review", "Fix address and resend" and "Resend"
    on a bounced, dropped or blocked employee, and switching one employee's address (`switches`).
    `when`: the choice of when to send it opens with (e.g. a notice's "Schedule for their start dates").
    """
    rule = AddressRule.of(ctx.settings, ctx.clock.now(), switches)
    with ctx.sessions() as session:
        recipients = preview(session, employee_ids, rule)
    recipients, note = with_suppressions(ctx.settings, recipients)
    reference = save_selection(
        ctx.sessions,
        slack_actor(user_id),
        [r.employee_id for r in recipients],
        "review",
        addresses={r.employee_id: r.address for r in recipients},  # what the admin confirms
        emailed={r.employee_id: r.last_emailed_at for r in recipients},
        bypass=[r.employee_id for r in recipients if r.on_bounce_list and r.problem is None],
        switches=rule.switches,
    )
    state = FlowState(channel_id=channel_id, selection=reference)
    when_part = _when_part(ctx, [r.employee_id for r in recipients if r.problem is None], when)
    return confirm_view(
        recipients, ctx.settings.credential_mode, state, suppression_note=note, when=when_part
    )


def _when_part(ctx: Context, mailable: list[int], when: When) -> list[Block]:
    """The confirmation's "When", with each employee's moment on their start date summarised."""
    default_time = ctx.settings.start_day_send_time
    start_dates = Schedule(When.START_DATE, schedule.parse_time(default_time))
    with ctx.sessions() as session:
        planned = schedule.moments(session, ctx.settings, start_dates, mailable, ctx.clock.now())
    return when_blocks(planned, default_time, [m.zone for m in planned.values()], when)
