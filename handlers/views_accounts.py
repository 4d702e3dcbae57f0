"""Submissions of the modals App Home opens: create accounts, rename, edit roles, unlock/disable/enable.

Rename is checked and done before the ack, so a taken or malformed username is shown under the field;
it is one row. The others may touch thousands of accounts: the ack shows "Working..." and the work
runs in the background, then replaces the modal with what was done and republishes App Home.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.accounts import (
    AccountChangeError,
    ChangeAccounts,
    NoAccount,
    Renamed,
    create_accounts,
    disable_accounts,
    edit_roles,
    enable_accounts,
    rename_account,
    unlock_accounts,
)
from bot.audit import slack_actor
from bot.context import Context
from bot.notices import notify_renamed, rename_notice_text
from bot.selections import SelectionNotFound, load_selection
from bot.settings import split_names
from handlers import ids
from handlers.app_home import publish_home
from handlers.background import Background
from handlers.blocks import escape
from handlers.slack_calls import SlackCallFailed, call
from handlers.views_credentials import message_view
from handlers.views_home import MANAGE_CHOICES, changes_text, created_text, roles_text

EXPIRED_TEXT = "This window is no longer valid. Please start again from App Home."

CHANGES: dict[str, tuple[str, ChangeAccounts]] = {
    ids.MANAGE_UNLOCK: ("Unlocked", unlock_accounts),
    ids.MANAGE_DISABLE: ("Disabled", disable_accounts),
    ids.MANAGE_ENABLE: ("Enabled", enable_accounts),
}


def _picked(form: dict[str, Any], action_id: str) -> list[int]:
    value = form.get(action_id)
    values: list[Any] = value if isinstance(value, list) else [value]
    return [int(v) for v in values if str(v).isdigit()]


def register(app: App) -> None:
    app.view(ids.CREATE_ACCOUNTS_VIEW)(submit_create)
    app.view(ids.RENAME_VIEW)(submit_rename)
    app.view(ids.ROLES_VIEW)(submit_roles)
    app.view(ids.MANAGE_VIEW)(submit_manage)


Change = Callable[[Context], tuple[str, str]]
"""A submission's work after the ack: it returns the result view's (title, text)."""


def hand_over(
    ack: Ack, body: dict[str, Any], user_id: str, background: Background, title: str, change: Change
) -> None:
    """Show "Working..." now, and do `change` in the background."""
    ack(response_action="update", view=message_view(title, ":hourglass_flowing_sand: Working on it…"))
    background.start("changing accounts", user_id, None, finish, user_id, body["view"]["id"], change)


def finish(ctx: Context, client: WebClient, user_id: str, view_id: str, change: Change) -> None:
    """Do the work, replace "Working..." with what was done, refresh App Home."""
    title, text = change(ctx)
    with contextlib.suppress(SlackCallFailed):  # audited; the change itself is done and App Home shows it
        view = message_view(title, text)
        call(ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view)
    publish_home(ctx, client, user_id)


def submit_create(ack: Ack, body: dict[str, Any], user_id: str, background: Background) -> None:
    reference = body["view"].get("private_metadata", "")

    def change(ctx: Context) -> tuple[str, str]:
        try:
            with ctx.sessions.begin() as session:
                employee_ids = load_selection(session, reference, slack_actor(user_id))
                result = create_accounts(session, ctx.settings, slack_actor(user_id), employee_ids)
        except SelectionNotFound:
            return "Create accounts", EXPIRED_TEXT
        return "Accounts created", created_text(
            len(result.created), len(result.existing), len(result.skipped)
        )

    hand_over(ack, body, user_id, background, "Create accounts", change)


def submit_rename(ack: Ack, form: dict[str, Any], user_id: str, ctx: Context, background: Background) -> None:
    """Rename before the ack (a taken or malformed username is shown under the field), then email."""
    picked = _picked(form, ids.RENAME_EMPLOYEE_ACTION)
    if not picked:
        ack(response_action="errors", errors={ids.RENAME_EMPLOYEE_BLOCK: "Pick the employee."})
        return
    try:
        with ctx.sessions.begin() as session:
            renamed = rename_account(
                session, slack_actor(user_id), picked[0], str(form.get(ids.USERNAME_ACTION) or "")
            )
    except AccountChangeError as error:
        block = ids.RENAME_EMPLOYEE_BLOCK if isinstance(error, NoAccount) else ids.USERNAME_BLOCK
        ack(response_action="errors", errors={block: str(error)})
        return
    ack(
        response_action="update",
        view=message_view(
            "Account renamed",
            f":white_check_mark: Renamed `{renamed.old_username}` to `{renamed.new_username}` "
            f"({escape(renamed.employee_number)}). {escape(rename_notice_text(renamed))}",
        ),
    )
    background.start("emailing the new username", user_id, None, after_rename, user_id, renamed)


def after_rename(ctx: Context, client: WebClient, user_id: str, renamed: Renamed) -> None:
    notify_renamed(ctx, renamed, slack_actor(user_id))
    publish_home(ctx, client, user_id)


def submit_roles(
    ack: Ack, body: dict[str, Any], form: dict[str, Any], user_id: str, background: Background
) -> None:
    picked = _picked(form, ids.EMPLOYEES_ACTION)
    department = str(form.get(ids.DEPARTMENT_ACTION) or "").strip()
    add = split_names(str(form.get(ids.ADD_ROLES_ACTION) or ""))
    remove = split_names(str(form.get(ids.REMOVE_ROLES_ACTION) or ""))
    if bool(picked) == bool(department):
        ack(
            response_action="errors",
            errors={ids.DEPARTMENT_BLOCK: "Pick employees above, or give a department (not both)."},
        )
        return
    if not add and not remove:
        ack(response_action="errors", errors={ids.ADD_ROLES_BLOCK: "Give a role to add or to remove."})
        return

    def change(ctx: Context) -> tuple[str, str]:
        try:
            with ctx.sessions.begin() as session:
                result = edit_roles(
                    session, slack_actor(user_id), add, remove, picked, department or None, create_roles=True
                )
        except AccountChangeError as error:
            return "Roles not changed", f":x: {error} Nothing was changed."
        return "Roles changed", roles_text(result)

    hand_over(ack, body, user_id, background, "Edit roles", change)


def submit_manage(
    ack: Ack, body: dict[str, Any], form: dict[str, Any], user_id: str, background: Background
) -> None:
    picked = _picked(form, ids.EMPLOYEES_ACTION)
    choice = str(form.get(ids.MANAGE_CHOICE_ACTION) or "")
    if choice not in MANAGE_CHOICES or not picked:
        block = ids.EMPLOYEES_BLOCK if not picked else ids.MANAGE_CHOICE_BLOCK
        ack(response_action="errors", errors={block: "Pick employees and what to do."})
        return
    done, apply = CHANGES[choice]

    def change(ctx: Context) -> tuple[str, str]:
        with ctx.sessions.begin() as session:
            result = apply(session, slack_actor(user_id), picked)
        return "Accounts changed", changes_text(done, result)

    hand_over(ack, body, user_id, background, "Manage accounts", change)
