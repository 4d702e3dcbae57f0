"""Slack listeners, one module per kind; `register_listeners` wires them all to a Bolt app.

Listener modules (`commands`, `options`, `views`, `actions`, App Home's `home` and `views_accounts`, the
portal's `recovery` cards, SCIM's `scim_notices`) hold module-level functions and a `register(app)` that
names every entry point; they take credbot's context, the admin check's result and background work as
arguments, which `middleware` puts in Bolt's context.
They never import one another: shared steps live in `credentials_flow` and `app_home`.
`create_bolt_app` builds the Bolt app with them all (the entry points serve it).
"""

from __future__ import annotations

from concurrent.futures import Executor

from slack_bolt import App

from bot.context import Context
from bot.slack_app import new_bolt_app
from handlers import (
    actions,
    commands,
    home,
    middleware,
    options,
    recovery,
    scim_notices,
    views,
    views_accounts,
)


def create_bolt_app(
    ctx: Context, *, socket_mode: bool = False, verify_token: bool = True, executor: Executor | None = None
) -> App:
    """The credbot Bolt app with every listener registered (`bot.slack_app.new_bolt_app`'s options)."""
    app = new_bolt_app(ctx, socket_mode=socket_mode, verify_token=verify_token, executor=executor)
    register_listeners(app, ctx)
    return app


def register_listeners(app: App, ctx: Context) -> None:
    """Install the global middleware (credbot's context, admins only, form parsing), then every listener."""
    middleware.install(app, ctx)
    commands.register(app)
    options.register(app)
    views.register(app)
    actions.register(app)
    home.register(app)
    views_accounts.register(app)
    recovery.register(app)
    scim_notices.register(app)
