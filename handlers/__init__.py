"""Slack listeners, one module per kind; `register_listeners` wires them all to a Bolt app."""

from __future__ import annotations

from slack_bolt import App

from bot.context import Context
from handlers import actions, commands, home, middleware, options, views, views_accounts


def register_listeners(app: App, ctx: Context) -> None:
    """Install the global middleware (admins only, form parsing), then every listener."""
    middleware.install(app, ctx)
    commands.register(app, ctx)
    options.register(app, ctx)
    views.register(app, ctx)
    actions.register(app, ctx)
    home.register(app, ctx)
    views_accounts.register(app, ctx)
