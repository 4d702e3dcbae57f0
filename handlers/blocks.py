"""Block Kit pieces and Slack's limits; every piece of user data shown in mrkdwn goes through `escape`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from bot.search import EmployeeChoice

MAX_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_PLAIN_TEXT_OPTION = 75
MAX_BUTTON_TEXT = 75
MAX_LABEL_TEXT = 2000
MAX_PICKED = 100
"""Most employees a picker holds, initial ones included (larger sets come from a checkbox or a list)."""
MAX_HEADER_TEXT = 150
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_MESSAGE_TEXT = 3000
"""Per message we post: Slack accepts more, but shows long texts collapsed; we chunk at this size."""
MAX_MESSAGE_BLOCKS_JSON = 11_000
"""A message's blocks as JSON, at most: Slack refuses messages whose blocks pass about 13,000 characters
(`msg_blocks_too_long`, undocumented; measured between 11,300 characters of text and 13,300 of JSON)."""

Block = dict[str, Any]


def blocks_size(blocks: list[Block]) -> int:
    """The size Slack's undocumented limit on a message's blocks is measured in (their compact JSON)."""
    return len(json.dumps(blocks, separators=(",", ":"), ensure_ascii=False))


def escape(text: object) -> str:
    """`text` safe inside mrkdwn: `&`, `<` and `>` escaped, so `<!channel>` or `<@U1>` cannot ping."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A plain_text object (Slack never interprets markup in it)."""
    return {"type": "plain_text", "text": shorten(text, limit), "emoji": True}


def plain_text(text: str) -> dict[str, Any]:
    """A plain_text object for text someone outside credbot wrote (made `inert` first): not even emoji
    codes are turned into pictures."""
    return {"type": "plain_text", "text": shorten(text, MAX_SECTION_TEXT), "emoji": False}


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn object; the caller has escaped any user data in `text`."""
    return {"type": "mrkdwn", "text": shorten(text, MAX_SECTION_TEXT)}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text)}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, MAX_HEADER_TEXT)}


def context(text: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(text)]}


def divider() -> Block:
    return {"type": "divider"}


def option(text: str, value: str) -> dict[str, Any]:
    return {"text": plain(text, MAX_PLAIN_TEXT_OPTION), "value": value}


def button(text: str, action_id: str, value: str = "", style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "action_id": action_id, "text": plain(text, MAX_BUTTON_TEXT)}
    if value:
        element["value"] = value
    if style:
        element["style"] = style
    return element


def actions(*elements: dict[str, Any], block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements)}
    if block_id:
        block["block_id"] = block_id
    return block


def input_block(
    block_id: str, label: str, element: dict[str, Any], optional: bool = False, hint: str | None = None
) -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain(label, MAX_LABEL_TEXT),
        "element": element,
    }
    if hint:
        block["hint"] = plain(hint, MAX_LABEL_TEXT)
    return block


def text_input(block_id: str, action_id: str, label: str, hint: str, optional: bool = True) -> Block:
    element = {"type": "plain_text_input", "action_id": action_id, "max_length": 2000}
    return input_block(block_id, label, element, optional, hint)


def employee_option(choice: EmployeeChoice) -> dict[str, Any]:
    """An option for the employee picker; its value is the employee id."""
    return option(shorten(choice.label, MAX_PLAIN_TEXT_OPTION), str(choice.employee_id))


def employee_select(
    block_id: str,
    action_id: str,
    multi: bool,
    optional: bool = False,
    initial: Sequence[EmployeeChoice] = (),
) -> Block:
    """An input with the employee type-ahead (the picker's options listener answers it), holding the
    `initial` employees."""
    element: dict[str, Any] = {
        "type": "multi_external_select" if multi else "external_select",
        "action_id": action_id,
        "placeholder": plain("Type a name, email, username or number"),
        "min_query_length": 2,
    }
    if multi:
        element["max_selected_items"] = MAX_PICKED
    if initial:
        element["initial_options"] = [employee_option(choice) for choice in initial[:MAX_PICKED]]
    return input_block(block_id, "Employees" if multi else "Employee", element, optional)


def person_line(
    name: str, employee_number: str, username: str | None, address: str | None, note: str | None = None
) -> str:
    """`• *Name* (number) · `username` · address: note`, every part escaped; absent parts left out."""
    parts = [f"*{escape(name)}* ({escape(employee_number)})"]
    if username:
        parts.append(f"`{escape(username)}`")
    if address:
        parts.append(escape(address))
    line = "• " + " · ".join(parts)
    return f"{line}: {escape(note)}" if note else line


def pack_lines(lines: Iterable[str], limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Join lines into as few texts of at most `limit` characters as possible (long lines are cut)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = shorten(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def listed_sections(lines: list[str], max_sections: int, more: str = "…and {count} more.") -> list[Block]:
    """Sections listing `lines`, at most `max_sections`, then a context block counting the rest."""
    chunks = pack_lines(lines)
    shown = chunks[:max_sections]
    blocks = [section(chunk) for chunk in shown]
    rest = len(lines) - sum(chunk.count("\n") + 1 for chunk in shown)
    if rest > 0:
        blocks.append(context(more.format(count=f"{rest:,}")))
    return blocks


def modal(
    callback_id: str,
    title: str,
    blocks: list[Block],
    submit: str | None = None,
    close: str = "Close",
    private_metadata: str = "",
) -> dict[str, Any]:
    """A modal view, checked against Slack's limits so that a mistake fails here, not in Slack."""
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"a view may have at most {MAX_BLOCKS} blocks, not {len(blocks)}")
    if len(private_metadata) > MAX_PRIVATE_METADATA:
        raise ValueError(
            f"private_metadata is {len(private_metadata)} characters, over {MAX_PRIVATE_METADATA}"
        )
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MAX_VIEW_TITLE),
        "close": plain(close, MAX_VIEW_TITLE),
        "blocks": blocks,
        "private_metadata": private_metadata,
    }
    if submit:
        view["submit"] = plain(submit, MAX_VIEW_TITLE)
    return view
