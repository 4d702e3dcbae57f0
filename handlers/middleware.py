"""Global middleware: credbot's context for the listeners, admins only (for every request kind), and view
state parsed into a plain dict."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request.payload_utils import (
    is_block_actions,
    is_event,
    is_options,
    is_slash_command,
    is_view_submission,
)

from bot.admins import is_admin
from bot.audit import AuditAction, record_now, slack_actor
from bot.context import Context
from handlers import ids
from handlers.background import Background
from handlers.slack_calls import tell_user
from handlers.views_credentials import NOT_ALLOWED_TEXT, not_allowed_view

ADMIN_CACHE_SECONDS = 5.0


class AdminCheck:
    """`is_admin`, remembering a "yes" for ADMIN_CACHE_SECONDS (never a "no").

    A slash command must be answered fast, and the database round trip of the check was most of
    credbot's time before the ack. Someone removed from the admins is refused at the latest
    ADMIN_CACHE_SECONDS later; someone added is allowed at once. A "yes" past half its life is
    re-checked in the background (on `refresh_with`), so an admin at work is never kept waiting.
    `cached=False` always asks the database: for the steps that change something.
    """

    def __init__(
        self, ctx: Context, ttl: float = ADMIN_CACHE_SECONDS, refresh_with: Executor | None = None
    ) -> None:
        self.ctx, self.ttl, self.refresh_with = ctx, ttl, refresh_with
        self._confirmed: dict[str, float] = {}
        self._refreshing: set[str] = set()

    def __call__(self, user_id: str, cached: bool = True) -> bool:
        if not cached:
            return self._check(user_id)
        confirmed = self._confirmed.get(user_id)
        age = self.ctx.clock.monotonic() - confirmed if confirmed is not None else self.ttl
        if age >= self.ttl:
            return self._check(user_id)
        if age >= self.ttl / 2 and self.refresh_with and user_id not in self._refreshing:
            self._refreshing.add(user_id)
            self.refresh_with.submit(self._check, user_id)
        return True

    def _check(self, user_id: str) -> bool:
        checked_at = self.ctx.clock.monotonic()
        try:
            with self.ctx.sessions() as session:
                allowed = is_admin(session, user_id, self.ctx.settings.bootstrap_admin_ids)
        finally:
            self._refreshing.discard(user_id)
        if allowed:
            self._confirmed[user_id] = checked_at
        else:
            self._confirmed.pop(user_id, None)
        return allowed


def install(app: App, ctx: Context) -> None:
    """Register the global middleware, in order: credbot's context, the admin check, form parsing.

    They subclass Bolt's `Middleware` (as its built-in ones do) rather than being functions: Bolt builds
    the keyword arguments of a function middleware anew for each request, which cost more than the
    middleware's own work.
    """
    executor = app.listener_runner.listener_executor
    app.use(ListenerArguments(ctx, executor))
    app.use(AdminsOnly(ctx, AdminCheck(ctx, refresh_with=executor)))
    app.use(FormParser())


class ListenerArguments(Middleware):
    """What listeners take as arguments beside Bolt's own (Bolt passes context keys by name): `ctx`, and
    `background` to start work after the ack."""

    def __init__(self, ctx: Context, executor: Executor) -> None:
        self.ctx, self.executor = ctx, executor

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        req.context["ctx"] = self.ctx
        response_url = req.body.get("response_url")  # commands and message buttons have one
        req.context["background"] = Background(self.executor, self.ctx, req.context.client, response_url)
        return next()


class AdminsOnly(Middleware):
    """Refuse every request (command, options, view submission, action) from someone not an admin.

    The one exception: anyone may open App Home (`app_home_opened`); the listener shows a non-admin a
    short view saying whom to ask, and its `admin` argument tells it which view to show.
    """

    def __init__(self, ctx: Context, admin_check: AdminCheck) -> None:
        self.ctx, self.admin_check = ctx, admin_check

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        body, context = req.body, req.context
        user_id = context.user_id
        # Only the read-only requests that must answer fastest may use a remembered "yes".
        cached = is_slash_command(body) or is_options(body) or is_event(body)
        context["admin"] = bool(user_id) and self.admin_check(str(user_id), cached=cached)
        if context["admin"] or (is_event(body) and body["event"].get("type") == ids.HOME_OPENED):
            return next()
        kind, name = describe(body)
        record_now(self.ctx.sessions, slack_actor(user_id), AuditAction.ACCESS_REFUSED, name, kind=kind)
        return refusal(context["background"], body, user_id, context.channel_id)


class FormParser(Middleware):
    """For view submissions, put `{action_id: value}` in `context["form"]` (lists for multi-selects):
    listeners take it as their `form` argument."""

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        if is_view_submission(req.body):
            values = req.body.get("view", {}).get("state", {}).get("values", {})
            req.context["form"] = form_values(values)
        return next()


def describe(body: dict[str, Any]) -> tuple[str, str | None]:
    """(request kind, command / callback id / action id) for the audit log."""
    if is_slash_command(body):
        return "command", body.get("command")
    if is_view_submission(body):
        return "view_submission", body.get("view", {}).get("callback_id")
    if is_options(body):
        return "options", body.get("action_id")
    if is_block_actions(body):
        actions = body.get("actions") or [{}]
        return "block_actions", actions[0].get("action_id")
    return str(body.get("type", "unknown")), None


def refusal(
    background: Background, body: dict[str, Any], user_id: str | None, channel_id: str | None
) -> BoltResponse:
    """The answer to a refused request: the refusal itself where Slack can show it, else an empty ack."""
    if is_slash_command(body):
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": NOT_ALLOWED_TEXT})
    if is_view_submission(body):
        return BoltResponse(status=200, body={"response_action": "update", "view": not_allowed_view()})
    if is_options(body):
        return BoltResponse(status=200, body={"options": []})
    if is_block_actions(body) and user_id:
        background.start(
            "telling you that",
            user_id,
            channel_id,
            tell_user,
            user_id,
            channel_id,
            NOT_ALLOWED_TEXT,
            response_url=body.get("response_url"),
        )
    return BoltResponse(status=200, body="")


def form_values(state_values: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Slack's `view.state.values` as `{action_id: value}`; a multi-select or checkboxes give a list."""
    form: dict[str, Any] = {}
    for actions in state_values.values():
        for action_id, element in actions.items():
            if "selected_options" in element:
                form[action_id] = [choice.get("value") for choice in element["selected_options"] or []]
            elif "selected_option" in element:
                selected = element["selected_option"]
                form[action_id] = selected.get("value") if selected else None
            elif "selected_time" in element or "selected_date" in element:  # timepicker, datepicker
                form[action_id] = element.get("selected_time") or element.get("selected_date")
            else:
                form[action_id] = element.get("value")
    return form
