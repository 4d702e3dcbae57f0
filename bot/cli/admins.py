"""`credbot admins`: who may use the Slack app."""

from __future__ import annotations

import click

from bot.admins import AdminError, add_admin, list_admins, remove_admin
from bot.cli.common import cli_actor, context, print_table


@click.group()
def admins() -> None:
    """Manage the Slack users allowed to use credbot."""


@admins.command("list")
def list_command() -> None:
    """List admins (ADMIN_SLACK_USER_IDS are admins too)."""
    ctx = context()
    with ctx.sessions() as session:
        rows = [
            (a.slack_user_id, a.name, a.added_by, f"{a.created_at:%Y-%m-%d %H:%M}")
            for a in list_admins(session)
        ]
    rows += [
        (user_id, "", "ADMIN_SLACK_USER_IDS", "") for user_id in sorted(ctx.settings.bootstrap_admin_ids)
    ]
    print_table(["SLACK USER", "NAME", "ADDED BY", "SINCE"], rows)


@admins.command("add")
@click.argument("slack_user_id")
@click.option("--name", help="A name to remember the admin by.")
def add_command(slack_user_id: str, name: str | None) -> None:
    """Allow a Slack user to use credbot.

    SLACK_USER_ID is the member id, like U012AB3CD (profile, then Copy member ID).
    """
    try:
        with context().sessions.begin() as session:
            admin = add_admin(session, slack_user_id, cli_actor(), name)
    except AdminError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{admin.slack_user_id} is now an admin.")


@admins.command("remove")
@click.argument("slack_user_id")
def remove_command(slack_user_id: str) -> None:
    """Stop a Slack user (SLACK_USER_ID) from using credbot."""
    try:
        with context().sessions.begin() as session:
            remove_admin(session, slack_user_id, cli_actor())
    except AdminError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{slack_user_id.upper()} is no longer an admin.")
