"""App Home and the modals it opens, as pure functions: plain data in, Block Kit view out.

Every list is summarised (a count, the first few people, "Show all") so the views stay within Slack's
limits whatever the directory's size; "Show all" pages through a stage PAGE_SIZE people at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.accounts import USERNAME_RULES, AccountsChanged, RolesEdited
from bot.audit import slack_user_of
from bot.delivery_events import PROBLEM_STATES
from bot.onboarding import STAGE_TITLES, Desk, Person, Stage
from bot.reports import BatchLine
from bot.sending.schedule import ScheduledBatch
from handlers import ids
from handlers.blocks import (
    MAX_BLOCKS,
    Block,
    actions,
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
    plain,
    section,
    shorten,
    text_input,
)
from handlers.views_schedule import cancel_button

PAGE_SIZE = 20
LISTED = 300
"""People a confirmation names (the rest are counted)."""
CONFIRM_SECTIONS = 12
RESEND_STAGES = (Stage.AWAITING_SIGN_IN, Stage.EXPIRING, Stage.EXPIRED)
ROW_ACTIONS = {
    Stage.LOCKED: (ids.ROW_UNLOCK_ACTION, "Unlock"),
    Stage.DISABLED: (ids.ROW_ENABLE_ACTION, "Enable"),
}


def time_left(deadline: datetime | None, now: datetime) -> str:
    """`2 days left`, `5 hours left`, `expired 3 hours ago`... for an emailed credential."""
    if deadline is None:
        return "no expiry"
    seconds = (deadline - now).total_seconds()
    span = abs(seconds)
    if span >= 2 * 86400:
        amount = f"{int(span // 86400)} days"
    elif span >= 2 * 3600:
        amount = f"{int(span // 3600)} hours"
    else:
        amount = f"{max(1, int(span // 60))} minutes"
    return f"{amount} left" if seconds > 0 else f"expired {amount} ago"


def person_note(stage: Stage, person: Person, now: datetime) -> str | None:
    """What a line says besides who: the time left, or how long a lock runs."""
    if stage in RESEND_STAGES:
        return time_left(person.deadline, now)
    if stage == Stage.LOCKED and person.locked_until and person.locked_until > now:
        return f"locked for {time_left(person.locked_until, now).removesuffix(' left')}"
    return None


def stage_line(stage: Stage, person: Person, now: datetime) -> str:
    return person_line(
        person.name, person.employee_number, person.username, None, person_note(stage, person, now)
    )


def _stage_action(stage: Stage, count: int) -> dict[str, Any] | None:
    if stage == Stage.NO_ACCOUNT:
        return button("Create accounts", ids.HOME_CREATE_ACCOUNTS, style="primary")
    if stage == Stage.NEVER_EMAILED:
        return button("Email credentials", ids.HOME_EMAIL_NEVER_EMAILED, style="primary")
    if stage in RESEND_STAGES:
        return button("Resend", ids.HOME_RESEND, stage)
    if stage == Stage.LOCKED:
        unlock = button(f"Unlock all {count:,}", ids.HOME_UNLOCK_ALL)
        unlock["confirm"] = {
            "title": plain("Unlock accounts?", 100),
            "text": plain(f"End the lockout of all {count:,} locked accounts now?", 300),
            "confirm": plain("Unlock", 30),
            "deny": plain("Cancel", 30),
        }
        return unlock
    return None


def stage_blocks(desk: Desk, stage: Stage) -> list[Block]:
    count, people = desk.counts[stage], desk.samples[stage]
    title = f"*{STAGE_TITLES[stage]}: {count:,}*"
    if not count:
        return [context(f"{title} · nobody")]
    lines = [stage_line(stage, person, desk.at) for person in people]
    if count > len(people):
        lines.append(f"…and {count - len(people):,} more")
    blocks = [section(shorten("\n".join([title, *lines]), 3000))]
    buttons = [element for element in (_stage_action(stage, count),) if element]
    if count > len(people) or stage in ROW_ACTIONS:
        buttons.append(button(f"Show all {count:,}", ids.HOME_SHOW_ALL, stage))
    if buttons:
        blocks.append(actions(*buttons))
    return blocks


def actor_text(actor: str) -> str:
    """`slack:U1` as a mention, anything else (`cli:ana`) escaped."""
    user_id = slack_user_of(actor)
    return f"<@{escape(user_id)}>" if user_id and user_id.isalnum() else f"`{escape(actor)}`"


def batch_line(batch: BatchLine) -> str:
    """A recent batch: its state and counts, and the delivery problems SendGrid reported since."""
    counts = f"{batch.sent:,} sent, {batch.failed:,} failed, {batch.skipped:,} skipped"
    if batch.pending:
        counts += f", {batch.pending:,} to go"
    line = (
        f"• #{batch.batch_id} · *{escape(batch.status)}* · {counts} · {actor_text(batch.requested_by)} · "
        f"{batch.created_at:%Y-%m-%d %H:%M} UTC"
    )
    problems = sum(batch.delivery.get(state, 0) for state in PROBLEM_STATES)
    if problems:
        line += (
            f"\n      :warning: *{problems:,} delivery problem{'s' if problems != 1 else ''}* "
            "(bounced, dropped or blocked): fix the address or resend from the batch's thread"
        )
    return line


def scheduled_blocks(scheduled: Sequence[ScheduledBatch]) -> list[Block]:
    """App Home's Scheduled section: each batch waiting for its moments, with its Cancel button."""
    if not scheduled:
        return []
    blocks: list[Block] = [divider(), section("*Scheduled*")]
    for batch in scheduled:
        when = escape(batch.schedule.describe()) if batch.schedule else "scheduled"
        line = (
            f"#{batch.batch_id} · {when} · *{batch.waiting.count:,} waiting* · next "
            f"{batch.waiting.next_at:%a %-d %b %H:%M} UTC · {actor_text(batch.requested_by)}"
        )
        blocks.append({**section(line), "accessory": cancel_button(batch.batch_id)})
    return blocks


def home_view(desk: Desk, new_hires: Sequence[Block] = ()) -> dict[str, Any]:
    """The admin's desk: each stage of onboarding with its action, the funnel, recent batches, tools;
    `new_hires`: the identity provider's hires awaiting credentials (handlers.scim_messages)."""
    funnel = desk.funnel
    blocks: list[Block] = [
        header("Onboarding"),
        context(
            f"{desk.employees:,} employees, {funnel.accounts:,} accounts of active employees · "
            f"updated {desk.at:%Y-%m-%d %H:%M} UTC"
        ),
        section(
            f"*Activation funnel:* {funnel.emailed:,} emailed → {funnel.signed_in:,} signed in → "
            f"{funnel.password_changed:,} changed their password"
        ),
        actions(
            button("Account report (CSV)", ids.HOME_REPORT),
            button("Rename an account", ids.HOME_RENAME),
            button("Edit roles", ids.HOME_ROLES),
            button("Unlock · disable · enable", ids.HOME_MANAGE),
            button("Refresh", ids.HOME_REFRESH),
        ),
        divider(),
    ]
    for stage in Stage:
        blocks += stage_blocks(desk, stage)
    blocks += scheduled_blocks(desk.scheduled)
    if new_hires:
        blocks += [divider(), *new_hires]
    blocks.append(divider())
    blocks.append(section("*Recent credential batches*"))
    if desk.batches:
        blocks.append(section("\n".join(batch_line(batch) for batch in desk.batches)))
    else:
        blocks.append(context("No credentials have been emailed yet."))
    assert len(blocks) <= MAX_BLOCKS
    return {"type": "home", "blocks": blocks}


def guest_home_view(admin_ids: Sequence[str]) -> dict[str, Any]:
    """App Home for someone who is not an admin: what credbot is and whom to ask."""
    ask = ", ".join(f"<@{escape(admin)}>" for admin in admin_ids[:10]) or "your HR or IT department"
    return {
        "type": "home",
        "blocks": [
            header("credbot"),
            section(
                "credbot creates Self-Service accounts for new employees and emails them their sign-in "
                "details. Only credbot admins can use it."
            ),
            section(f"Need an account, a new password email, or admin access? Ask {ask}."),
        ],
    }


# --- "Show all" ---------------------------------------------------------------------------------------


def list_view(stage: Stage, people: Sequence[Person], page: int, total: int, now: datetime) -> dict[str, Any]:
    """One page of a stage's list; locked and disabled people each get their Unlock / Enable button."""
    pages = max(1, -(-total // PAGE_SIZE))
    blocks: list[Block] = [header(f"{STAGE_TITLES[stage]} ({total:,})")]
    row_action = ROW_ACTIONS.get(stage)
    if row_action:
        for person in people:
            row = section(stage_line(stage, person, now))
            row["accessory"] = button(row_action[1], row_action[0], str(person.employee_id))
            blocks.append(row)
    elif people:
        blocks += listed_sections([stage_line(stage, person, now) for person in people], PAGE_SIZE)
    if not people:
        blocks.append(section("Nobody is in this list any more."))
    blocks.append(context(f"Page {page + 1:,} of {pages:,}"))
    navigation = []
    if page > 0:
        navigation.append(button("Previous", ids.LIST_PAGE_ACTION, f"{stage}:{page - 1}"))
    if page + 1 < pages:
        navigation.append(button("Next", ids.LIST_PAGE_ACTION, f"{stage}:{page + 1}"))
    if navigation:
        blocks.append(actions(*navigation))
    metadata = json.dumps({"stage": str(stage), "page": page})
    return modal(ids.LIST_VIEW, "Onboarding", blocks, private_metadata=metadata)


def parse_page(value: str) -> tuple[Stage, int] | None:
    """`stage:page` from a paging button (None when it is not one)."""
    name, _, page = value.partition(":")
    if name not in set(Stage) or not page.isdigit():
        return None
    return Stage(name), int(page)


# --- Create accounts ------------------------------------------------------------------------------------


def create_accounts_view(first: Sequence[Person], total: int, reference: str) -> dict[str, Any]:
    """The confirmation before creating accounts for `total` employees (saved server-side under
    `reference`), listing the `first` few by name."""
    lines = [person_line(p.name, p.employee_number, None, None) for p in first]
    blocks: list[Block] = [
        section(
            f"*{total:,} active employee{'s' if total != 1 else ''}* will get a Self-Service "
            "account: usernames from USERNAME_PATTERN, roles from DEFAULT_ROLES and the directory. "
            "Nobody is emailed yet."
        ),
        divider(),
        *listed_sections(lines, CONFIRM_SECTIONS),
    ]
    if total > len(first):
        blocks.append(context(f"…and {total - len(first):,} more."))
    return modal(
        ids.CREATE_ACCOUNTS_VIEW,
        "Create accounts",
        blocks,
        submit="Create accounts",
        close="Cancel",
        private_metadata=reference,
    )


def created_text(created: int, existing: int, skipped: int) -> str:
    text = f":white_check_mark: Created {created:,} account{'s' if created != 1 else ''}."
    if existing:
        text += f" {existing:,} had one already (made meanwhile)."
    if skipped:
        text += f" {skipped:,} skipped (no longer active)."
    if created:
        text += ' Email their credentials from App Home\'s "Email credentials".'
    return text


# --- Rename, roles, unlock / disable / enable -----------------------------------------------------------


def rename_view() -> dict[str, Any]:
    blocks: list[Block] = [
        employee_select(ids.RENAME_EMPLOYEE_BLOCK, ids.RENAME_EMPLOYEE_ACTION, multi=False),
        text_input(
            ids.USERNAME_BLOCK, ids.USERNAME_ACTION, "New username", f"{USERNAME_RULES}.", optional=False
        ),
        context("The employee is emailed their new username; the old one stops working at once."),
    ]
    return modal(ids.RENAME_VIEW, "Rename an account", blocks, submit="Rename", close="Cancel")


def roles_view() -> dict[str, Any]:
    blocks: list[Block] = [
        employee_select(ids.EMPLOYEES_BLOCK, ids.EMPLOYEES_ACTION, multi=True, optional=True),
        text_input(
            ids.DEPARTMENT_BLOCK,
            ids.DEPARTMENT_ACTION,
            "Or a whole department",
            "Every active employee of this department, as named in the directory.",
        ),
        text_input(ids.ADD_ROLES_BLOCK, ids.ADD_ROLES_ACTION, "Roles to add", "Separate roles with commas."),
        text_input(
            ids.REMOVE_ROLES_BLOCK, ids.REMOVE_ROLES_ACTION, "Roles to remove", "Separate roles with commas."
        ),
    ]
    return modal(ids.ROLES_VIEW, "Edit roles", blocks, submit="Apply", close="Cancel")


MANAGE_CHOICES = {
    ids.MANAGE_UNLOCK: "Unlock (end a lockout after wrong passwords)",
    ids.MANAGE_DISABLE: "Disable (no sign-in, no credential emails)",
    ids.MANAGE_ENABLE: "Enable again",
}


def manage_view() -> dict[str, Any]:
    blocks: list[Block] = [
        employee_select(ids.EMPLOYEES_BLOCK, ids.EMPLOYEES_ACTION, multi=True),
        input_block(
            ids.MANAGE_CHOICE_BLOCK,
            "What to do",
            {
                "type": "radio_buttons",
                "action_id": ids.MANAGE_CHOICE_ACTION,
                "options": [option(text, value) for value, text in MANAGE_CHOICES.items()],
            },
        ),
    ]
    return modal(ids.MANAGE_VIEW, "Manage accounts", blocks, submit="Apply", close="Cancel")


def changes_text(done: str, result: AccountsChanged) -> str:
    """What an unlock, disable or enable did, for a result modal (user data escaped)."""
    lines = [f"*{done} {len(result.changed):,} account{'s' if len(result.changed) != 1 else ''}.*"]
    lines += [f"• `{escape(username)}` ({escape(number)})" for number, username in result.changed[:30]]
    lines += [f"• {escape(number)}: left alone, {escape(why)}" for number, why in result.unchanged[:30]]
    return shorten("\n".join(lines), 3000)


def roles_text(result: RolesEdited) -> str:
    text = f"*Changed the roles of {result.changed:,} account(s)*"
    text += f"; {escape(result.unchanged_text())}." if result.unchanged else "."
    if result.without_account:
        text += f"\n{len(result.without_account):,} employee(s) have no account and were left alone."
    return text + f"\nAudited as action #{result.group}."
