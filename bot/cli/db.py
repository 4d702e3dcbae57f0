"""`credbot db`: the database schema."""

from __future__ import annotations

import click

from bot.cli.common import context
from models import upgrade_database


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema to the newest migration."""
    engine = context().sessions.kw["bind"]
    upgrade_database(engine)
    click.echo(f"Database is up to date ({engine.url.render_as_string(hide_password=True)}).")
