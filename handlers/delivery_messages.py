"""What SendGrid's delivery events add to a batch's trail in Slack, as pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.delivery_events import MailState, Problem, describe_counts
from bot.outside_text import inert
from handlers import ids
from handlers.blocks import (
    MAX_MESSAGE_BLOCKS_JSON,
    MAX_VIEW_TITLE,
    Block,
    actions,
    blocks_size,
    button,
    context,
    escape,
    input_block,
    modal,
    plain,
    plain_text,
    section,
)

WHAT_HAPPENED = {
    MailState.BOUNCED: "bounced",
    MailState.DROPPED: "was dropped by SendGrid",
    MailState.BLOCKED: "was blocked",
}


def delivery_line(counts: dict[str, int]) -> str:
    """E.g. `:mailbox_with_mail: Delivery: 18 delivered · 1 bounced · 1 dropped · 0 waiting`."""
    return f":mailbox_with_mail: Delivery: {describe_counts(counts)}"


def with_delivery_line(message: dict[str, Any], counts: dict[str, int]) -> tuple[str, list[Block]]:
    """The summary message as posted (`text`, `blocks`) with the delivery line under it."""
    line = delivery_line(counts)
    return f"{message['text']}\n{line}", [*message["blocks"], context(line)]


PROBLEMS_PER_MESSAGE = 20
"""Employees per thread reply at most (two blocks each, within Slack's 50), so a mass bounce stays a few
posts; fewer when their reasons are long (MAX_MESSAGE_BLOCKS_JSON)."""


def problem_blocks(problem: Problem) -> tuple[str, list[Block]]:
    """One bounced, dropped or blocked employee: the reason in plain words, and the two buttons.

    The reason holds what the recipient's mail server wrote: it goes in as inert plain text (see
    `bot.outside_text`), beside credbot's own words, never as markup.
    """
    what = WHAT_HAPPENED.get(problem.state, str(problem.state))
    to = f" to {escape(problem.address)}" if problem.address else ""
    said = f"Why: {inert(problem.reason or 'no reason given')}"
    text = (
        f":warning: *{escape(problem.name)}* ({escape(problem.employee_number)}) did not get their "
        f"credentials: the email{to} {what}."
    )
    section_block = {**section(text), "fields": [plain_text(said)]}
    value = str(problem.delivery_id)
    buttons = actions(
        button("Fix address and resend", ids.FIX_ADDRESS_ACTION, value, "primary"),
        button("Resend", ids.RESEND_ACTION, value),
    )
    return f"{text} {escape(said)}", [section_block, buttons]


def problem_messages(problems: Sequence[Problem]) -> list[tuple[str, list[Block], list[Problem]]]:
    """Thread replies (text, blocks, the employees in it) listing every problem, each within Slack's
    block count and its limit on the blocks' total size (`msg_blocks_too_long`)."""
    messages: list[tuple[str, list[Block], list[Problem]]] = []
    texts: list[str] = []
    blocks: list[Block] = []
    chunk: list[Problem] = []
    for problem in problems:
        text, more = problem_blocks(problem)
        full = len(chunk) == PROBLEMS_PER_MESSAGE or blocks_size([*blocks, *more]) > MAX_MESSAGE_BLOCKS_JSON
        if chunk and full:
            messages.append(("\n".join(texts), blocks, chunk))
            texts, blocks, chunk = [], [], []
        texts.append(text)
        blocks.extend(more)
        chunk.append(problem)
    if chunk:
        messages.append(("\n".join(texts), blocks, chunk))
    return messages


@dataclass(frozen=True)
class FixState:
    """What travels in the fix-address modal's `private_metadata`."""

    employee_id: int
    channel_id: str | None

    def dump(self) -> str:
        return json.dumps({"employee": self.employee_id, "channel": self.channel_id}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> FixState | None:
        try:
            data = json.loads(raw or "{}")
        except ValueError:
            return None
        employee, channel = data.get("employee") if isinstance(data, dict) else None, data.get("channel")
        if not isinstance(employee, int):
            return None
        return cls(employee, channel if isinstance(channel, str) else None)


def fix_address_view(
    name: str, employee_number: str, address: str | None, reason: str | None, state: FixState
) -> dict[str, Any]:
    """The modal to correct an employee's address; "Review" leads to the normal confirmation."""
    element: dict[str, Any] = {
        "type": "email_text_input",
        "action_id": ids.ADDRESS_ACTION,
        "placeholder": plain("name@example.com"),
    }
    if address:
        element["initial_value"] = address
    blocks: list[Block] = [
        {
            **section(
                f"*{escape(name)}* ({escape(employee_number)}): the credentials email"
                f"{' to ' + escape(address) if address else ''} did not arrive."
            ),
            **({"fields": [plain_text(f"Why: {inert(reason)}")]} if reason else {}),
        },
        input_block(
            ids.ADDRESS_BLOCK,
            "Correct email address",
            element,
            hint="The directory is updated (and audited). You confirm before anything is sent.",
        ),
    ]
    return modal(
        ids.FIX_ADDRESS_VIEW,
        "Fix address"[:MAX_VIEW_TITLE],
        blocks,
        submit="Review",
        close="Cancel",
        private_metadata=state.dump(),
    )
