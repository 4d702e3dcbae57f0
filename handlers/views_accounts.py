"""Submissions of the modals App Home opens: create accounts, rename, edit roles, unlock/disable/enable.

Rename is checked and done before the ack, so a taken or malformed username is shown under the field;
it is one row. The others may touch thousands of accounts: the ack shows "Working..." and a lazy
listener does the work, then replaces the modal with what was done and republishes App Home.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.accounts import (
    AccountChangeError,
    create_accounts,
    disable_accounts,
    edit_roles,
    employee_numbers_for,
    enable_accounts,
    rename_account,
    unlock_as_change,
)
from bot.audit import slack_actor
from bot.context import Context
from bot.notices import notify_renamed
from bot.selections import SelectionNotFound, load_selection
from bot.settings import split_names
from handlers import ids
from handlers.blocks import escape
from handlers.home import publish_home
from handlers.slack_calls import SlackCallFailed, call, errors_told
from handlers.views_credentials import message_view
from handlers.views_home import MANAGE_CHOICES, changes_text, created_text, roles_text

WORK_KEY = "credbot_account_work"
"""Context key through which an ack hands its work to the lazy listener."""
EXPIRED_TEXT = "This window is no longer valid. Please start again from App Home."

CHANGES: dict[str, tuple[str, Callable[..., Any]]] = {
    ids.MANAGE_UNLOCK: ("Unlocked", unlock_as_change),
    ids.MANAGE_DISABLE: ("Disabled", disable_accounts),
    ids.MANAGE_ENABLE: ("Enabled", enable_accounts),
}


def _picked(form: dict[str, Any], action_id: str) -> list[int]:
    value = form.get(action_id)
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values if str(v).isdigit()]


def register(app: App, ctx: Context) -> None:
    def finish(context: BoltContext, client: WebClient) -> None:
        """The lazy half of every submission here: do the work, show the result, refresh App Home."""
        work = context.get(WORK_KEY)
        if not work:
            return
        user_id, view_id = work["user_id"], work["view_id"]
        with errors_told(ctx, client, user_id, None, "changing accounts"):
            title, text = work["run"]()
            try:
                view = message_view(title, text)
                call(
                    ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view
                )
            except SlackCallFailed:
                pass  # audited; the change itself is done and App Home shows it
            publish_home(ctx, client, user_id)

    def hand_over(
        ack: Ack, body: dict[str, Any], context: BoltContext, title: str, run: Callable[[], Any]
    ) -> None:
        context[WORK_KEY] = {"user_id": str(context.user_id), "view_id": body["view"]["id"], "run": run}
        ack(response_action="update", view=message_view(title, ":hourglass_flowing_sand: Working on it…"))

    def submit_create(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        user_id = str(context.user_id)
        reference = body["view"].get("private_metadata", "")

        def run() -> tuple[str, str]:
            try:
                with ctx.sessions.begin() as session:
                    numbers = employee_numbers_for(
                        session, load_selection(session, reference, slack_actor(user_id))
                    )
                    result = create_accounts(session, ctx.settings, slack_actor(user_id), numbers)
            except SelectionNotFound:
                return "Create accounts", EXPIRED_TEXT
            return "Accounts created", created_text(
                len(result.created), len(result.existing), len(result.skipped)
            )

        hand_over(ack, body, context, "Create accounts", run)

    def submit_rename(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        form = context.get("form", {})
        user_id = str(context.user_id)
        picked = _picked(form, ids.RENAME_EMPLOYEE_ACTION)
        if not picked:
            ack(response_action="errors", errors={ids.RENAME_EMPLOYEE_BLOCK: "Pick the employee."})
            return
        try:
            with ctx.sessions.begin() as session:
                (number,) = employee_numbers_for(session, picked[:1]) or ("",)
                renamed = rename_account(
                    session, slack_actor(user_id), number, str(form.get(ids.USERNAME_ACTION) or "")
                )
        except AccountChangeError as error:
            block = ids.RENAME_EMPLOYEE_BLOCK if "has no account" in str(error) else ids.USERNAME_BLOCK
            ack(response_action="errors", errors={block: str(error)})
            return
        context[WORK_KEY] = {"renamed": renamed, "user_id": user_id}
        ack(
            response_action="update",
            view=message_view(
                "Account renamed",
                f":white_check_mark: Renamed `{renamed.old_username}` to `{renamed.new_username}` "
                f"({escape(renamed.employee_number)}). The employee is being emailed their new username "
                "(a failure is audited).",
            ),
        )

    def after_rename(context: BoltContext, client: WebClient) -> None:
        work = context.get(WORK_KEY)
        if not work:
            return
        user_id = work["user_id"]
        with errors_told(ctx, client, user_id, None, "emailing the new username"):
            notify_renamed(ctx, work["renamed"], slack_actor(user_id))
            publish_home(ctx, client, user_id)

    def submit_roles(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        form = context.get("form", {})
        user_id = str(context.user_id)
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

        def run() -> tuple[str, str]:
            try:
                with ctx.sessions.begin() as session:
                    numbers = employee_numbers_for(session, picked)
                    result = edit_roles(
                        session, slack_actor(user_id), add, remove, numbers, department or None
                    )
            except AccountChangeError as error:
                return "Roles not changed", f":x: {error} Nothing was changed."
            return "Roles changed", roles_text(result)

        hand_over(ack, body, context, "Edit roles", run)

    def submit_manage(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        form = context.get("form", {})
        user_id = str(context.user_id)
        picked = _picked(form, ids.EMPLOYEES_ACTION)
        choice = str(form.get(ids.MANAGE_CHOICE_ACTION) or "")
        if choice not in MANAGE_CHOICES or not picked:
            block = ids.EMPLOYEES_BLOCK if not picked else ids.MANAGE_CHOICE_BLOCK
            ack(response_action="errors", errors={block: "Pick employees and what to do."})
            return
        done, change = CHANGES[choice]

        def run() -> tuple[str, str]:
            with ctx.sessions.begin() as session:
                result = change(session, slack_actor(user_id), employee_numbers_for(session, picked))
            return "Accounts changed", changes_text(done, result)

        hand_over(ack, body, context, "Manage accounts", run)

    app.view(ids.CREATE_ACCOUNTS_VIEW)(ack=submit_create, lazy=[finish])
    app.view(ids.RENAME_VIEW)(ack=submit_rename, lazy=[after_rename])
    app.view(ids.ROLES_VIEW)(ack=submit_roles, lazy=[finish])
    app.view(ids.MANAGE_VIEW)(ack=submit_manage, lazy=[finish])
