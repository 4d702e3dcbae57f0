"""App Home: published on `app_home_opened` and after every action taken from it; its buttons.

Every button is acknowledged at once; the work (queries, views.open/update/publish) runs in a lazy
listener. A view opened from a button must be opened within the trigger's 3 seconds, so those lazy
listeners do little before `views.open`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.accounts import AccountsChanged, employee_numbers_for, enable_accounts, unlock_as_change
from bot.admins import list_admins
from bot.audit import slack_actor
from bot.context import Context
from bot.onboarding import Stage, desk, stage_count, stage_employee_ids, stage_page
from bot.selections import save_selection
from handlers import ids
from handlers.commands import open_picker_modal
from handlers.middleware import HOME_OPENED
from handlers.report_upload import send_account_report
from handlers.slack_calls import SlackCallFailed, call, errors_told, tell_user
from handlers.views_home import (
    LISTED,
    PAGE_SIZE,
    RESEND_STAGES,
    create_accounts_view,
    guest_home_view,
    home_view,
    list_view,
    manage_view,
    parse_page,
    rename_view,
    roles_view,
)
from models import utcnow


def publish_home(ctx: Context, client: WebClient, user_id: str, admin: bool = True) -> None:
    """Build and publish App Home for `user_id` (a failure is audited, and nothing else can be done)."""
    with ctx.sessions() as session:
        if admin:
            view = home_view(desk(session))
        else:
            admins = [
                *sorted(ctx.settings.bootstrap_admin_ids),
                *(a.slack_user_id for a in list_admins(session)),
            ]
            view = guest_home_view(list(dict.fromkeys(admins)))
    with contextlib.suppress(SlackCallFailed):
        call(ctx, slack_actor(user_id), "views.publish", client.views_publish, user_id=user_id, view=view)


def open_view(ctx: Context, client: WebClient, user_id: str, trigger_id: str, view: dict[str, Any]) -> None:
    """views.open, telling the admin in a DM when Slack refuses."""
    try:
        call(ctx, slack_actor(user_id), "views.open", client.views_open, trigger_id=trigger_id, view=view)
    except SlackCallFailed as failure:
        tell_user(ctx, client, user_id, None, f"I could not open that window: {failure.explanation}")


ButtonWork = Callable[[str, str, dict[str, Any], WebClient], None]
"""The lazy half of a button: (user id, the button's value, the request body, client)."""


def _stage(value: str) -> Stage | None:
    return Stage(value) if value in set(Stage) else None


def register(app: App, ctx: Context) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    def home_opened(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish_home(ctx, client, event["user"], admin=bool(context.get("admin")))

    app.event(HOME_OPENED)(ack=acknowledge, lazy=[home_opened])

    def on_button(action_id: str, work: ButtonWork) -> None:
        """Register `work(user_id, value, body, client)` as the lazy half of a button, errors told."""

        def run(body: dict[str, Any], client: WebClient) -> None:
            user_id = body["user"]["id"]
            with errors_told(ctx, client, user_id, None, "acting on your click"):
                work(user_id, str(body["actions"][0].get("value", "")), body, client)

        app.action(action_id)(ack=acknowledge, lazy=[run])

    def refresh(user_id: str, _value: str, _body: dict[str, Any], client: WebClient) -> None:
        publish_home(ctx, client, user_id)

    def show_all(user_id: str, value: str, body: dict[str, Any], client: WebClient) -> None:
        if stage := _stage(value):
            with ctx.sessions() as session:
                people, total = stage_page(session, stage, 0, PAGE_SIZE), stage_count(session, stage)
            open_view(ctx, client, user_id, body["trigger_id"], list_view(stage, people, 0, total, utcnow()))

    def turn_page(user_id: str, value: str, body: dict[str, Any], client: WebClient) -> None:
        if parsed := parse_page(value):
            update_list(user_id, body["view"]["id"], *parsed, client)

    def update_list(user_id: str, view_id: str, stage: Stage, page: int, client: WebClient) -> None:
        with ctx.sessions() as session:
            total = stage_count(session, stage)
            page = min(page, max(0, (total - 1) // PAGE_SIZE))
            people = stage_page(session, stage, page, PAGE_SIZE)
        view = list_view(stage, people, page, total, utcnow())
        with contextlib.suppress(SlackCallFailed):  # audited; the modal may have been closed
            call(ctx, slack_actor(user_id), "views.update", client.views_update, view_id=view_id, view=view)

    def row_change(change: Callable[[Session, str, list[str]], AccountsChanged]) -> ButtonWork:
        def work(user_id: str, number: str, body: dict[str, Any], client: WebClient) -> None:
            with ctx.sessions.begin() as session:
                change(session, slack_actor(user_id), [number])
            parsed = parse_page_metadata(body["view"].get("private_metadata", ""))
            if parsed:
                update_list(user_id, body["view"]["id"], *parsed, client)
            publish_home(ctx, client, user_id)

        return work

    def create_accounts(user_id: str, _value: str, body: dict[str, Any], client: WebClient) -> None:
        with ctx.sessions() as session:
            employee_ids = stage_employee_ids(session, Stage.NO_ACCOUNT)
            first = stage_page(session, Stage.NO_ACCOUNT, 0, LISTED)
        reference = save_selection(ctx.sessions, slack_actor(user_id), employee_ids, "create_accounts")
        view = create_accounts_view(first, len(employee_ids), reference)
        open_view(ctx, client, user_id, body["trigger_id"], view)

    def email_never_emailed(user_id: str, _value: str, body: dict[str, Any], client: WebClient) -> None:
        open_picker_modal(
            ctx, client, user_id=user_id, channel_id=None, trigger_id=body["trigger_id"], pending=True
        )

    def resend(user_id: str, value: str, body: dict[str, Any], client: WebClient) -> None:
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

    def unlock_all(user_id: str, _value: str, _body: dict[str, Any], client: WebClient) -> None:
        with ctx.sessions.begin() as session:
            numbers = employee_numbers_for(session, stage_employee_ids(session, Stage.LOCKED))
            unlock_as_change(session, slack_actor(user_id), numbers)
        publish_home(ctx, client, user_id)

    def report(user_id: str, _value: str, _body: dict[str, Any], client: WebClient) -> None:
        send_account_report(ctx, client, user_id)

    def modal_opener(build: Callable[[], dict[str, Any]]) -> ButtonWork:
        def work(user_id: str, _value: str, body: dict[str, Any], client: WebClient) -> None:
            open_view(ctx, client, user_id, body["trigger_id"], build())

        return work

    on_button(ids.HOME_REFRESH, refresh)
    on_button(ids.HOME_SHOW_ALL, show_all)
    on_button(ids.LIST_PAGE_ACTION, turn_page)
    on_button(ids.ROW_UNLOCK_ACTION, row_change(unlock_as_change))
    on_button(ids.ROW_ENABLE_ACTION, row_change(enable_accounts))
    on_button(ids.HOME_CREATE_ACCOUNTS, create_accounts)
    on_button(ids.HOME_EMAIL_NEVER_EMAILED, email_never_emailed)
    on_button(ids.HOME_RESEND, resend)
    on_button(ids.HOME_UNLOCK_ALL, unlock_all)
    on_button(ids.HOME_REPORT, report)
    on_button(ids.HOME_RENAME, modal_opener(rename_view))
    on_button(ids.HOME_ROLES, modal_opener(roles_view))
    on_button(ids.HOME_MANAGE, modal_opener(manage_view))


def parse_page_metadata(metadata: str) -> tuple[Stage, int] | None:
    """(stage, page) from a list modal's private_metadata."""
    try:
        data = json.loads(metadata or "{}")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return parse_page(f"{data.get('stage')}:{data.get('page')}")
