"""App Home: published on `app_home_opened` and after every action taken from it; its buttons.

Every button is acknowledged at once; its work (queries, views.open/update/publish) runs in the
background. A view opened from a button must be opened within the trigger's 3 seconds, so that work
does little before `views.open`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.accounts import ChangeAccounts, enable_accounts, unlock_accounts
from bot.audit import slack_actor
from bot.context import Context
from bot.home_views import remember_opened
from bot.onboarding import Stage, stage_count, stage_employee_ids, stage_page
from bot.selections import save_selection
from handlers import ids
from handlers.app_home import publish_home
from handlers.background import Background
from handlers.credentials_flow import open_picker_modal
from handlers.report_upload import send_account_report
from handlers.slack_calls import call_or_tell, call_with_hash
from handlers.views_home import (
    LISTED,
    PAGE_SIZE,
    RESEND_STAGES,
    create_accounts_view,
    list_view,
    manage_view,
    parse_page,
    rename_view,
    roles_view,
)
from models import utcnow


def open_view(ctx: Context, client: WebClient, user_id: str, trigger_id: str, view: dict[str, Any]) -> None:
    """views.open, telling the admin in a DM when Slack refuses."""
    call_or_tell(
        ctx,
        client,
        user_id,
        None,
        "I could not open that window",
        "views.open",
        client.views_open,
        trigger_id=trigger_id,
        view=view,
    )


ButtonWork = Callable[[Context, WebClient, str, str, dict[str, Any]], None]
"""What a button does after its ack: (ctx, client, user id, the button's value, the request body)."""


def _stage(value: str) -> Stage | None:
    return Stage(value) if value in set(Stage) else None


def register(app: App) -> None:
    app.event(ids.HOME_OPENED)(home_opened)
    for action_id in BUTTONS:
        app.action(action_id)(clicked)


def home_opened(ack: Ack, event: dict[str, Any], admin: bool, background: Background) -> None:
    ack()
    if event.get("tab", "home") == "home":
        user_id, view_hash = event["user"], (event.get("view") or {}).get("hash")
        background.start("showing App Home", user_id, None, show_home, user_id, admin, view_hash)


def show_home(ctx: Context, client: WebClient, user_id: str, admin: bool, view_hash: str | None) -> None:
    """Remember that `user_id` has App Home open (a batch ending republishes it), and publish it."""
    remember_opened(ctx.sessions, user_id, ctx.clock.now())
    publish_home(ctx, client, user_id, admin=admin, view_hash=view_hash)


def clicked(ack: Ack, action: dict[str, Any], body: dict[str, Any], background: Background) -> None:
    """Every button of App Home and its modals: ack, then its work from BUTTONS in the background."""
    ack()
    user_id = body["user"]["id"]
    work = BUTTONS[action["action_id"]]
    background.start("acting on your click", user_id, None, work, user_id, str(action.get("value", "")), body)


def refresh(ctx: Context, client: WebClient, user_id: str, _value: str, body: dict[str, Any]) -> None:
    publish_home(ctx, client, user_id, view_hash=_view_hash(body))


def _view_hash(body: dict[str, Any]) -> str | None:
    """The hash of the view a click came from (App Home or a modal), as Slack sends it."""
    return (body.get("view") or {}).get("hash")


def show_all(ctx: Context, client: WebClient, user_id: str, value: str, body: dict[str, Any]) -> None:
    if stage := _stage(value):
        with ctx.sessions() as session:
            people, total = stage_page(session, stage, 0, PAGE_SIZE), stage_count(session, stage)
        open_view(ctx, client, user_id, body["trigger_id"], list_view(stage, people, 0, total, utcnow()))


def turn_page(ctx: Context, client: WebClient, user_id: str, value: str, body: dict[str, Any]) -> None:
    if parsed := parse_page(value):
        update_list(ctx, client, user_id, body["view"]["id"], *parsed, view_hash=_view_hash(body))


def update_list(
    ctx: Context,
    client: WebClient,
    user_id: str,
    view_id: str,
    stage: Stage,
    page: int,
    view_hash: str | None = None,
) -> None:
    """Show `page` of the list modal (a failure is audited; the modal may have been closed)."""

    def build() -> dict[str, Any]:
        with ctx.sessions() as session:
            total = stage_count(session, stage)
            shown = min(page, max(0, (total - 1) // PAGE_SIZE))
            people = stage_page(session, stage, shown, PAGE_SIZE)
        return list_view(stage, people, shown, total, utcnow())

    actor = slack_actor(user_id)
    call_with_hash(ctx, actor, "views.update", client.views_update, build, view_hash, view_id=view_id)


def change_row(
    ctx: Context,
    client: WebClient,
    user_id: str,
    employee_id: str,
    body: dict[str, Any],
    change: ChangeAccounts,
) -> None:
    """Change one row of a list modal (its button's value is the employee id), then show the list and
    App Home again."""
    if employee_id.isdigit():
        with ctx.sessions.begin() as session:
            change(session, slack_actor(user_id), [int(employee_id)])
    parsed = parse_page_metadata(body["view"].get("private_metadata", ""))
    if parsed:
        update_list(ctx, client, user_id, body["view"]["id"], *parsed, view_hash=_view_hash(body))
    publish_home(ctx, client, user_id)


def unlock_row(ctx: Context, client: WebClient, user_id: str, value: str, body: dict[str, Any]) -> None:
    change_row(ctx, client, user_id, value, body, unlock_accounts)


def enable_row(ctx: Context, client: WebClient, user_id: str, value: str, body: dict[str, Any]) -> None:
    change_row(ctx, client, user_id, value, body, enable_accounts)


def create_accounts(ctx: Context, client: WebClient, user_id: str, _value: str, body: dict[str, Any]) -> None:
    with ctx.sessions() as session:
        employee_ids = stage_employee_ids(session, Stage.NO_ACCOUNT)
        first = stage_page(session, Stage.NO_ACCOUNT, 0, LISTED)
    reference = save_selection(ctx.sessions, slack_actor(user_id), employee_ids, "create_accounts")
    view = create_accounts_view(first, len(employee_ids), reference)
    open_view(ctx, client, user_id, body["trigger_id"], view)


def email_never_emailed(
    ctx: Context, client: WebClient, user_id: str, _value: str, body: dict[str, Any]
) -> None:
    open_picker_modal(
        ctx, client, user_id=user_id, channel_id=None, trigger_id=body["trigger_id"], pending=True
    )


def resend(ctx: Context, client: WebClient, user_id: str, value: str, body: dict[str, Any]) -> None:
    stage = _stage(value)
    if stage in RESEND_STAGES:
        with ctx.sessions() as session:
            employee_ids = stage_employee_ids(session, stage)
        open_picker_modal(
            ctx,
            client,
            user_id=user_id,
            channel_id=None,
            trigger_id=body["trigger_id"],
            employee_ids=employee_ids,
        )


def unlock_all(ctx: Context, client: WebClient, user_id: str, _value: str, _body: dict[str, Any]) -> None:
    with ctx.sessions.begin() as session:
        unlock_accounts(session, slack_actor(user_id), stage_employee_ids(session, Stage.LOCKED))
    publish_home(ctx, client, user_id)


def report(ctx: Context, client: WebClient, user_id: str, _value: str, _body: dict[str, Any]) -> None:
    send_account_report(ctx, client, user_id)


def open_rename(ctx: Context, client: WebClient, user_id: str, _value: str, body: dict[str, Any]) -> None:
    open_view(ctx, client, user_id, body["trigger_id"], rename_view())


def open_roles(ctx: Context, client: WebClient, user_id: str, _value: str, body: dict[str, Any]) -> None:
    open_view(ctx, client, user_id, body["trigger_id"], roles_view())


def open_manage(ctx: Context, client: WebClient, user_id: str, _value: str, body: dict[str, Any]) -> None:
    open_view(ctx, client, user_id, body["trigger_id"], manage_view())


BUTTONS: dict[str, ButtonWork] = {
    ids.HOME_REFRESH: refresh,
    ids.HOME_SHOW_ALL: show_all,
    ids.LIST_PAGE_ACTION: turn_page,
    ids.ROW_UNLOCK_ACTION: unlock_row,
    ids.ROW_ENABLE_ACTION: enable_row,
    ids.HOME_CREATE_ACCOUNTS: create_accounts,
    ids.HOME_EMAIL_NEVER_EMAILED: email_never_emailed,
    ids.HOME_RESEND: resend,
    ids.HOME_UNLOCK_ALL: unlock_all,
    ids.HOME_REPORT: report,
    ids.HOME_RENAME: open_rename,
    ids.HOME_ROLES: open_roles,
    ids.HOME_MANAGE: open_manage,
}
"""What each button does after its ack."""


def parse_page_metadata(metadata: str) -> tuple[Stage, int] | None:
    """(stage, page) from a list modal's private_metadata."""
    try:
        data = json.loads(metadata or "{}")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return parse_page(f"{data.get('stage')}:{data.get('page')}")
