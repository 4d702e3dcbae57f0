"""The employee picker's type-ahead (Slack's options load URL)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.context import Context
from bot.search import search_employees
from handlers import ids
from handlers.blocks import employee_option


def register(app: App) -> None:
    app.options(ids.EMPLOYEES_ACTION)(suggest_employees)
    app.options(ids.RENAME_EMPLOYEE_ACTION)(suggest_employees)


def suggest_employees(ack: Ack, body: dict[str, Any], ctx: Context) -> None:
    with ctx.sessions() as session:
        choices = search_employees(session, body.get("value", ""))
    ack(options=[employee_option(choice) for choice in choices])
