"""The `/email-credentials` modals as pure functions: plain data in, Block Kit view out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot import credential_modes
from bot.outside_text import inert
from bot.search import EmployeeChoice
from bot.sending.recipients import Recipient
from handlers import ids
from handlers.blocks import (
    Block,
    button,
    context,
    divider,
    employee_select,
    escape,
    header,
    input_block,
    listed_sections,
    modal,
    option,
    person_line,
    section,
    shorten,
)

TITLE = "Email credentials"
MAILABLE_SECTIONS = 12
UNMAILABLE_SECTIONS = 6
SWITCHABLE_LIST = 25
"""Most employees listed one per block, each with a button to switch their address; more are summarised."""


@dataclass(frozen=True)
class FlowState:
    """What travels from one modal to the next in `private_metadata` (ids only: a few dozen characters)."""

    channel_id: str | None = None
    """Where the command was typed: the audit messages go there unless AUDIT_CHANNEL_ID is set."""
    selection: str | None = None
    """Reference to a selection saved server-side (bot.selections)."""

    def dump(self) -> str:
        return json.dumps({"channel": self.channel_id, "selection": self.selection}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> FlowState:
        try:
            data = json.loads(raw or "{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        channel, selection = data.get("channel"), data.get("selection")
        return cls(
            channel_id=channel if isinstance(channel, str) else None,
            selection=selection if isinstance(selection, str) else None,
        )


def picker_view(
    state: FlowState,
    preselected: Sequence[EmployeeChoice] = (),
    never_emailed_count: int = 0,
    never_emailed_checked: bool = False,
    from_command_count: int = 0,
    unknown_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """The first modal: the type-ahead picker plus "everyone never emailed" (and the command's list)."""
    blocks: list[Block] = [
        section(
            "Pick the employees who should get their Self-Service credentials by email. "
            "Nothing is sent until you confirm on the next screen."
        ),
        employee_select(
            ids.EMPLOYEES_BLOCK, ids.EMPLOYEES_ACTION, multi=True, optional=True, initial=preselected
        ),
    ]
    presets = []
    checked = []
    if never_emailed_count:
        presets.append(option(f"Everyone never emailed ({never_emailed_count:,})", ids.PRESET_NEVER_EMAILED))
        if never_emailed_checked:
            checked.append(presets[-1])
    if from_command_count:
        presets.append(
            option(f"The {from_command_count:,} employees from your command", ids.PRESET_FROM_COMMAND)
        )
        checked.append(presets[-1])
    if presets:
        checkboxes: dict[str, Any] = {
            "type": "checkboxes",
            "action_id": ids.PRESETS_ACTION,
            "options": presets,
        }
        if checked:
            checkboxes["initial_options"] = checked
        blocks.append(input_block(ids.PRESETS_BLOCK, "Or take many at once", checkboxes, optional=True))
    else:
        blocks.append(context("Every active employee with an account has been emailed at least once."))
    if unknown_keys:
        blocks.append(context(shorten("Not found: " + escape(", ".join(unknown_keys)), 3000)))
    return modal(
        ids.PICKER_VIEW, TITLE, blocks, submit="Review", close="Cancel", private_metadata=state.dump()
    )


def recipient_line(recipient: Recipient) -> str:
    """The person's line with which address and why (or why they cannot be mailed), and a note if they were
    emailed before."""
    line = person_line(
        recipient.name, recipient.employee_number, recipient.username, recipient.address, recipient.problem
    )
    if not recipient.problem and recipient.address_reason:
        line = f"{line} · _{escape(recipient.address_reason)}_"
    if recipient.address_warning:
        line = f"{line} :warning: {escape(inert(recipient.address_warning))}"
    if recipient.suppression:
        line = f"{line} :no_entry_sign: {escape(recipient.suppression)}"
    if not recipient.problem and recipient.last_emailed_at:
        return f"{line} _(emailed before, {recipient.last_emailed_at:%Y-%m-%d}: gets a new one)_"
    return line


def address_blocks(mailable: Sequence[Recipient]) -> list[Block]:
    """The mailable employees: one section each with a button to switch between their work and personal
    address when there are few enough; otherwise packed sections, counted per kind of address."""
    switchable = sum(1 for r in mailable if r.switchable)
    if switchable and len(mailable) <= SWITCHABLE_LIST:
        return [_switchable_section(r) for r in mailable]
    blocks = listed_sections([recipient_line(r) for r in mailable], MAILABLE_SECTIONS)
    personal = sum(1 for r in mailable if r.address_kind == "personal")
    if not personal and not switchable:
        return blocks
    note = f"To their personal address: {personal:,}; to their work address: {len(mailable) - personal:,}."
    if switchable:
        note += (
            f" To switch one employee between their work and personal address, review at most "
            f"{SWITCHABLE_LIST} employees at a time."
        )
    blocks.append(context(note))
    return blocks


def _switchable_section(recipient: Recipient) -> Block:
    block = section(recipient_line(recipient))
    if recipient.switchable:
        other = "work" if recipient.address_kind == "personal" else "personal"
        block["accessory"] = button(
            f"Use {other} address", ids.SWITCH_ADDRESS_ACTION, f"{recipient.employee_id}:{other}"
        )
    return block


def confirm_view(
    recipients: Sequence[Recipient],
    mode: str,
    state: FlowState,
    suppression_note: str | None = None,
    when: Sequence[Block] = (),
) -> dict[str, Any]:
    """The confirmation: every address the emails go to, who cannot be mailed and why, and the warning.

    `suppression_note`: what to say about the check of SendGrid's suppression lists (not allowed...).
    `when`: the choice of when to send (`handlers.views_schedule`), shown when someone can be mailed."""
    mailable = [r for r in recipients if r.problem is None]
    unmailable = [r for r in recipients if r.problem is not None]
    again = sum(1 for r in mailable if r.last_emailed_at)
    what = credential_modes.of(mode).offered
    blocks: list[Block] = []
    if mailable:
        blocks.append(
            section(
                f"*{len(mailable):,} employee{'s' if len(mailable) != 1 else ''}* will get two emails each: "
                f"a welcome email with {what}, and a separate email with their username."
            )
        )
        blocks.append(section(_warning(mode, again)))
        blocks.append(context(f"Credential mode: `{escape(mode)}` ({what} in the welcome email)."))
        flagged = sum(1 for r in mailable if r.address_warning)
        if flagged:
            blocks.append(
                section(
                    f":warning: *{flagged:,} of these addresses bounced or were dropped before* "
                    "(marked below): correct them in the directory first, or they will likely fail again."
                )
            )
        listed = [r for r in mailable if r.suppression or r.on_bounce_list]
        if listed or suppression_note:
            blocks.append(section(_suppression_text(listed, suppression_note)))
        blocks.append(divider())
        blocks.append(header(f"Will be emailed ({len(mailable):,})"))
        blocks.extend(address_blocks(mailable))
    else:
        blocks.append(
            section("*Nobody in this selection can be emailed.* Fix the problems below and try again.")
        )
    if unmailable:
        blocks.append(divider())
        blocks.append(header(f"Cannot be emailed ({len(unmailable):,})"))
        blocks.extend(listed_sections([recipient_line(r) for r in unmailable], UNMAILABLE_SECTIONS))
    if mailable:
        blocks.extend(when)
    return modal(
        ids.CONFIRM_VIEW,
        "Confirm sending",
        blocks,
        submit="Send emails" if mailable else None,
        close="Cancel" if mailable else "Close",
        private_metadata=state.dump(),
    )


def _suppression_text(listed: Sequence[Recipient], note: str | None) -> str:
    bypass = sum(1 for r in listed if r.on_bounce_list)
    parts = []
    if listed:
        parts.append(
            f":no_entry_sign: *{len(listed):,} of these addresses are on SendGrid's suppression lists* "
            "(marked below). SendGrid drops mail to addresses on its bounce or spam report list."
        )
    if bypass:
        parts.append(
            f"If you send, the emails to the {bypass:,} on the bounce list bypass it this once: send only "
            "if the mailbox exists now (e.g. it was created since)."
        )
    if note:
        parts.append(f":grey_question: {escape(note)}")
    return " ".join(parts)


def _warning(mode: str, emailed_before: int) -> str:
    before = f" ({emailed_before:,} of these were emailed before)" if emailed_before else ""
    only_now = credential_modes.of(mode).only_now.format(before=before)
    return f":warning: *Credentials can only be emailed now:* {only_now}"


def message_view(title: str, text: str) -> dict[str, Any]:
    """A read-only modal with one message (sending started, already sent, not allowed...)."""
    return modal(ids.RESULT_VIEW, title, [section(text)])


def preparing_view(picked: int, presets: Sequence[str]) -> dict[str, Any]:
    """Shown at once after "Review", while the list is previewed in the background."""
    what = [f"{picked:,} picked employee{'s' if picked != 1 else ''}"] if picked else []
    if ids.PRESET_FROM_COMMAND in presets:
        what.append("the employees from your command")
    if ids.PRESET_NEVER_EMAILED in presets:
        what.append("everyone never emailed")
    return message_view(
        "Email credentials",
        f":hourglass_flowing_sand: Preparing the list for {' and '.join(what)}: every address is checked "
        "before anything is sent. This takes a moment for large selections.",
    )


def sending_view(channel_id: str | None) -> dict[str, Any]:
    where = f" in <#{channel_id}>" if channel_id else " in a direct message to you"
    return message_view(
        "Sending started",
        ":outbox_tray: Sending credentials to the employees you confirmed (those who cannot be emailed are "
        f"skipped). Progress and the summary will be posted{where}. You can close this window.",
    )


def queued_text(batch_id: int) -> str:
    return (
        f":hourglass: Batch #{batch_id} is saved and queued: credbot's job queue is unreachable right now, "
        "so sending starts when it is back. Nothing was sent yet, and you need not send again."
    )


def queued_view(batch_id: int) -> dict[str, Any]:
    return message_view("Queued", queued_text(batch_id))


def already_sent_view(batch_id: int) -> dict[str, Any]:
    return message_view(
        "Already sent",
        f"This confirmation was already submitted: batch #{batch_id} is sending or has been sent. "
        "Nothing was sent twice.",
    )


def not_allowed_view() -> dict[str, Any]:
    return message_view("Not allowed", NOT_ALLOWED_TEXT)


EXPIRED_TEXT = "This confirmation is no longer valid. Please type `/email-credentials` again."

NOT_ALLOWED_TEXT = (
    "Sorry, only credbot admins can email credentials. Ask an admin to add you (`credbot admins add`)."
)
