"""Email bodies from the Jinja2 templates in `templates/emails/`."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from templates import TEMPLATES_DIR


def format_time(value: datetime | str) -> str:
    """A time (or its ISO text) as people read it in an email, e.g. `Friday 27 November 2026, 14:05 UTC`."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%A %-d %B %Y, %H:%M UTC")


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
