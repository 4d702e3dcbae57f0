"""Email bodies from the Jinja2 templates in `templates/emails/`."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from bot.time_zones import local_time
from templates import TEMPLATES_DIR


@pass_context
def format_time(context: Context, value: datetime | str) -> str:
    """A time (or its ISO text) as the recipient reads it, in the template's `time_zone` when given (a
    ZoneInfo: the employee's), else UTC: e.g. `Monday 7 December 2026, 17:00 GMT`."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = context.get("time_zone")
    return local_time(moment, zone if isinstance(zone, ZoneInfo) else ZoneInfo("UTC"))


@cache
def _environment() -> Environment:
    # .html templates are autoescaped; .txt templates are plain text and must not be.
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "emails"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the code; no stat() per email
    )
    environment.filters["time"] = format_time
    return environment


def render_email(name: str, **context: Any) -> tuple[str, str]:
    """Render `templates/emails/{name}.txt` and `{name}.html` with `context`: (text, html)."""
    environment = _environment()
    text = environment.get_template(f"{name}.txt").render(**context)
    html = environment.get_template(f"{name}.html").render(**context)
    return text, html
