"""`credbot db`: the database schema."""

from __future__ import annotations

import click

from bot.cli.common import context
from models import Base, upgrade_database
from models.session import new_migration


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema to the newest migration."""
    engine = context().sessions.kw["bind"]
    before, after = upgrade_database(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before is None:
        tables = ", ".join(sorted(Base.metadata.tables))
        click.echo(f"Created the database schema (revision {after}) in {where}: tables {tables}.")
    elif before != after:
        click.echo(f"Upgraded the database schema from revision {before} to {after} ({where}).")
    else:
        click.echo(f"Database is up to date (revision {after}, {where}).")


@db.command()
@click.option("-m", "--message", required=True, help="What the migration changes, e.g. 'add lease columns'.")
def revision(message: str) -> None:
    """Write a new migration from the models' changes.

    The migration holds the difference between the models and the database (upgrade it first).
    """
    path = new_migration(context().sessions.kw["bind"], message)
    click.echo(f"Wrote {path}: read it and adjust it before you commit it.")
