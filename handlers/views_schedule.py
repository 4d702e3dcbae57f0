"""The confirmation's "When" (send now, on each employee's start date, at a date and time) as pure
functions: its blocks with the moments summarised, the admin's choice read back from the submission,
and the channel message of a scheduled batch with its Cancel button."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from bot.sending import schedule
from bot.sending.schedule import Moment, Schedule, When
from handlers import ids
from handlers.blocks import Block, context, divider, escape, header, modal, option, plain, section

MOMENT_LINES = 8
"""Moments listed in the confirmation (by moment and zone); the rest are counted."""
ZONE_OPTIONS = 99
"""A static select holds 100 options: "each employee's own" and up to 99 zones."""
OWN_ZONE = "own"

CHOICES = {
    When.NOW: "Send now",
    When.START_DATE: "On each employee's start date",
    When.AT: "At a date and time",
}


def when_blocks(
    planned: Mapping[int, Moment], default_time: str, zones: Sequence[str], initial: When = When.NOW
) -> list[Block]:
    """The "When" part of the confirmation. `planned`: each mailable employee's moment on their start date
    at `default_time`, summarised (how many at each moment, who cannot be scheduled); `zones`: the
    employees' zones, offered for "At a date and time"."""
    choices = {when: option(text, str(when)) for when, text in CHOICES.items()}
    zone_options = [option("Each employee's own time zone", OWN_ZONE)]
    zone_options += [option(zone, zone) for zone in sorted(set(zones))[:ZONE_OPTIONS]]
    blocks: list[Block] = [
        divider(),
        header("When"),
        _input(
            ids.WHEN_BLOCK,
            "Send",
            {
                "type": "radio_buttons",
                "action_id": ids.WHEN_ACTION,
                "options": list(choices.values()),
                "initial_option": choices[initial],
            },
            optional=False,
        ),
        section(start_date_summary(planned, default_time)),
        _input(
            ids.START_TIME_BLOCK,
            "Local time on their start date",
            {"type": "timepicker", "action_id": ids.START_TIME_ACTION, "initial_time": default_time},
        ),
        _input(
            ids.AT_DATE_BLOCK,
            "Date (at a date and time)",
            {"type": "datepicker", "action_id": ids.AT_DATE_ACTION},
        ),
        _input(
            ids.AT_TIME_BLOCK,
            "Time (at a date and time)",
            {"type": "timepicker", "action_id": ids.AT_TIME_ACTION, "initial_time": default_time},
        ),
        _input(
            ids.AT_ZONE_BLOCK,
            "Time zone (at a date and time)",
            {
                "type": "static_select",
                "action_id": ids.AT_ZONE_ACTION,
                "options": zone_options,
                "initial_option": zone_options[0],
            },
        ),
        context(
            "Scheduled: each employee's password or link is made when their email goes out and expires from "
            "then; whatever changed by then (address, leaver, disabled account, sent by another batch) is "
            "skipped with its reason. A moment already past means now."
        ),
    ]
    return blocks


def _input(block_id: str, label: str, element: dict[str, Any], optional: bool = True) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain(label),
        "element": element,
    }


def start_date_summary(planned: Mapping[int, Moment], default_time: str) -> str:
    """How many employees at each moment on their start dates (the first MOMENT_LINES), how many are
    sent at once (past) and who cannot be scheduled."""
    groups = schedule.moment_groups(planned.values())
    lines = [f"*On their start dates at {default_time}:*"]
    lines += [f"• {escape(g.local())} ({escape(g.zone)}): {g.count:,}" for g in groups[:MOMENT_LINES]]
    if len(groups) > MOMENT_LINES:
        rest = sum(g.count for g in groups[MOMENT_LINES:])
        lines.append(f"• …and {rest:,} more at {len(groups) - MOMENT_LINES:,} later moments")
    past = sum(1 for m in planned.values() if m.due_at is not None and m.note)
    if past:
        lines.append(f"{past:,} start date{'s have' if past != 1 else ' has'} passed: sent at once.")
    cannot = sum(1 for m in planned.values() if m.due_at is None)
    if cannot:
        lines.append(f":warning: {cannot:,} cannot be scheduled: no start date (skipped if you schedule).")
    if not groups and not cannot:
        lines.append("nobody")
    return "\n".join(lines)


def chosen_schedule(form: Mapping[str, Any], today: date) -> tuple[Schedule | None, dict[str, str]]:
    """The admin's choice from the submitted confirmation: (the schedule, None for "Send now"; errors
    by block id for Slack to show under the fields)."""
    when = form.get(ids.WHEN_ACTION) or When.NOW
    if when not in CHOICES or when == When.NOW:
        return None, {}
    try:
        if when == When.START_DATE:
            return Schedule(When.START_DATE, schedule.parse_time(form.get(ids.START_TIME_ACTION) or "")), {}
    except ValueError:
        return None, {ids.START_TIME_BLOCK: "Pick the local time on their start date."}
    errors: dict[str, str] = {}
    day = form.get(ids.AT_DATE_ACTION)
    try:
        chosen = date.fromisoformat(str(day))
    except ValueError:
        errors[ids.AT_DATE_BLOCK] = "Pick the date to send on."
    else:
        if chosen < today:
            errors[ids.AT_DATE_BLOCK] = "Pick today or a later date."
    try:
        at = schedule.parse_time(form.get(ids.AT_TIME_ACTION) or "")
    except ValueError:
        errors[ids.AT_TIME_BLOCK] = "Pick the time to send at."
    zone = form.get(ids.AT_ZONE_ACTION) or OWN_ZONE
    try:
        named = None if zone == OWN_ZONE else schedule.parse_zone(zone)
    except ValueError:
        errors[ids.AT_ZONE_BLOCK] = "Pick a time zone."
    if errors:
        return None, errors
    return Schedule(When.AT, at, chosen, named), {}


def scheduled_text(user_id: str, batch_id: int, line: str) -> str:
    """The channel message of a scheduled batch, e.g. "... 23 employees, on their start dates at 08:00 in
    their time zones; first Mon 7 Dec 08:00 GMT"."""
    return f":calendar: <@{user_id}> scheduled Self-Service credentials: {escape(line)}. Batch #{batch_id}."


def scheduled_blocks(text: str, batch_id: int) -> list[Block]:
    """The message with its Cancel button (admins only; what is not yet sent is cancelled)."""
    return [
        section(text),
        {
            "type": "actions",
            "elements": [cancel_button(batch_id)],
        },
    ]


def cancel_button(batch_id: int) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": ids.CANCEL_BATCH_ACTION,
        "value": str(batch_id),
        "text": plain("Cancel"),
        "style": "danger",
        "confirm": {
            "title": plain("Cancel the schedule?"),
            "text": plain(f"Nobody in batch #{batch_id} who is not yet emailed will be."),
            "confirm": plain("Cancel it"),
            "deny": plain("Keep it"),
        },
    }


def cancelled_text(user_id: str, batch_id: int, cancelled: int) -> str:
    return (
        f":no_entry_sign: <@{user_id}> cancelled batch #{batch_id}: {cancelled:,} "
        f"employee{'s' if cancelled != 1 else ''} not yet emailed will not be."
    )


def scheduled_view_text(channel_id: str | None, line: str) -> str:
    where = f"<#{channel_id}>" if channel_id else "a direct message to you"
    return (
        f":calendar: Scheduled: {escape(line)}. Each employee's emails go out at their moment; the trail "
        f"and a Cancel button are in {where}. You can close this window."
    )


def scheduling_view() -> dict[str, Any]:
    """Shown at once after confirming a schedule, while the batch is saved."""
    return modal(ids.RESULT_VIEW, "Scheduling", [section(":hourglass_flowing_sand: Saving the schedule...")])
