"""What the identity provider changed, as Slack shows it: the grouped notice in the audit channel and
App Home's list of new hires who still need credentials.

Names, employee numbers and the token's name came from outside credbot (the identity provider, whoever
named the token), so each is made inert (no links, no formatting) and escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from itertools import groupby
from typing import Any

from bot.outside_text import inert
from bot.scim_notices import Notice, NoticePerson, WaitingHires
from handlers import ids
from handlers.blocks import (
    MAX_MESSAGE_BLOCKS_JSON,
    MAX_MESSAGE_TEXT,
    Block,
    actions,
    blocks_size,
    button,
    context,
    escape,
    section,
    shorten,
)
from models import NoticeChange

LISTED = 60
"""People a notice names (the rest are counted): keeps it within Slack's size for a message's blocks."""
IN_TEXT = 5
"""People the notification text names per group."""
MAX_NAME = 80
MAX_TOKEN = 60
APP_HOME_LISTED = 5
SCHEDULE_TEXT = "Schedule for their start dates"
CONFIRM_NOTE = "Both open the usual confirmation: nobody is emailed until an admin confirms."


def _shown(text: str, limit: int) -> str:
    return escape(inert(text, limit))


def start_text(start: date | None, today: date) -> str:
    """`starts Mon 7 Dec` (the year when it is not this one), `started …` when past, or `no start date`."""
    if start is None:
        return "no start date"
    day = f"{start:%a} {start.day} {start:%b}" + (f" {start.year}" if start.year != today.year else "")
    return f"{'started' if start < today else 'starts'} {day}"


def _headline(change: NoticeChange, token: str, count: int) -> str:
    who = _shown(token, MAX_TOKEN)
    if change == NoticeChange.HIRED:
        return f"{who} added {count:,} new hire{'s' if count != 1 else ''}"
    return f"{who} deactivated {count:,} employee{'s' if count != 1 else ''}"


def _mention(person: NoticePerson, today: date) -> str:
    name = _shown(person.name, MAX_NAME)
    return f"{name} ({start_text(person.start_date, today)})" if person.change == NoticeChange.HIRED else name


def _line(person: NoticePerson, today: date) -> str:
    line = f"• *{_shown(person.name, MAX_NAME)}* ({_shown(person.employee_number, MAX_NAME)})"
    return f"{line} · {start_text(person.start_date, today)}" if person.change == NoticeChange.HIRED else line


def _groups(people: Sequence[NoticePerson]) -> list[tuple[NoticeChange, str, list[NoticePerson]]]:
    """(change, token, people) in the notice's order: hires first, each token's together."""
    ordered = sorted(people, key=lambda p: (p.change != NoticeChange.HIRED, p.token))
    return [
        (change, token, list(group))
        for (change, token), group in groupby(ordered, lambda p: (p.change, p.token))
    ]


def notice_message(notice: Notice, today: date) -> dict[str, Any]:
    """chat.postMessage arguments: "Okta added 3 new hires: Ada Lovelace (starts Mon 7 Dec), …", the
    people, and for hires the Schedule and Review buttons (their value: the notice's id)."""
    summaries: list[str] = []
    blocks: list[Block] = []
    room = LISTED
    for change, token, people in _groups(notice.people):
        named = ", ".join(_mention(p, today) for p in people[:IN_TEXT])
        summaries.append(
            f"{_headline(change, token, len(people))}: {named}{', …' if len(people) > IN_TEXT else ''}"
        )
        lines = [_line(p, today) for p in people[:room]]
        if len(people) > len(lines):
            lines.append(f"…and {len(people) - len(lines):,} more")
        room -= min(room, len(people))
        blocks.append(
            section(shorten("\n".join([f"*{_headline(change, token, len(people))}:*", *lines]), 3000))
        )
        if change == NoticeChange.LEFT:
            blocks.append(context("Their accounts are disabled and their scheduled sends cancelled."))
    if notice.of(NoticeChange.HIRED):
        value = str(notice.notice_id)
        blocks.append(
            actions(
                button(SCHEDULE_TEXT, ids.SCIM_SCHEDULE_ACTION, value, style="primary"),
                button("Review", ids.SCIM_REVIEW_ACTION, value),
            )
        )
        blocks.append(context(CONFIRM_NOTE))
    assert blocks_size(blocks) <= MAX_MESSAGE_BLOCKS_JSON
    return {"text": shorten(" · ".join(summaries), MAX_MESSAGE_TEXT), "blocks": blocks}


def waiting_hires_blocks(waiting: WaitingHires, today: date) -> list[Block]:
    """App Home: the identity provider's new hires who still need credentials, and the buttons (value
    `all`: every one of them)."""
    title = f"*New hires from the identity provider, awaiting credentials: {waiting.count:,}*"
    if not waiting.count:
        return [context(f"{title} · nobody")]
    lines = [_line(person, today) for person in waiting.first]
    if waiting.count > len(lines):
        lines.append(f"…and {waiting.count - len(lines):,} more")
    return [
        section(shorten("\n".join([title, *lines]), 3000)),
        actions(
            button(SCHEDULE_TEXT, ids.SCIM_SCHEDULE_ACTION, ids.SCIM_ALL_HIRES, style="primary"),
            button("Review", ids.SCIM_REVIEW_ACTION, ids.SCIM_ALL_HIRES),
        ),
    ]
