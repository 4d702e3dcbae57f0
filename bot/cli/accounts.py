"""`credbot accounts`: create and list Self-Service accounts."""

from __future__ import annotations

import sys

import click

from bot.accounts import (
    UsernamePatternError,
    create_accounts,
    list_accounts,
    shown_status,
    unlock_accounts,
)
from bot.cli.common import cli_actor, context, print_table, printable
from models import AccountStatus


@click.group()
def accounts() -> None:
    """Create and list Self-Service accounts."""


@accounts.command("create")
@click.argument("employee_numbers", nargs=-1)
@click.option("--all-missing", is_flag=True, help="Every active employee without an account.")
def create_command(employee_numbers: tuple[str, ...], all_missing: bool) -> None:
    """Create accounts for EMPLOYEE_NUMBERS (or --all-missing); existing accounts are left alone.

    Usernames follow USERNAME_PATTERN; roles are DEFAULT_ROLES plus the roles from the import.
    """
    if all_missing == bool(employee_numbers):
        raise click.UsageError("give either --all-missing or one or more employee numbers")
    ctx = context()
    try:
        with ctx.sessions.begin() as session:
            result = create_accounts(
                session, ctx.settings, cli_actor(), None if all_missing else employee_numbers, all_missing
            )
    except UsernamePatternError as error:
        raise click.ClickException(str(error)) from error
    if result.created:
        print_table(
            ["USERNAME", "EMPLOYEE", "NAME", "ROLES"],
            ((a.username, a.employee_number, a.name, ", ".join(a.roles)) for a in result.created),
        )
    click.echo(f"Created {len(result.created)} account(s).")
    if result.existing:
        existing = ", ".join(
            f"{printable(number)} ({printable(username)})" for number, username in result.existing
        )
        click.echo(f"Already had an account: {existing}")
    for number, reason in result.skipped:
        click.echo(f"Skipped {printable(number)}: {reason}")
    if result.unknown:
        click.echo(f"Unknown employee number(s): {printable(', '.join(result.unknown))}", err=True)
        sys.exit(1)


@accounts.command("list")
@click.option("--status", type=click.Choice([s.value for s in AccountStatus]), help="Only this status.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (by username).")
def list_command(status: str | None, limit: int | None) -> None:
    """List accounts by username."""
    with context().sessions() as session:
        rows = [
            (
                a.username,
                a.employee.employee_number,
                a.employee.full_name,
                shown_status(a),
                ", ".join(role.name for role in a.roles),
                f"{a.credentials_emailed_at:%Y-%m-%d %H:%M}" if a.credentials_emailed_at else "never",
            )
            for a in list_accounts(session, status, limit)
        ]
    print_table(["USERNAME", "EMPLOYEE", "NAME", "STATUS", "ROLES", "LAST EMAILED (UTC)"], rows)


@accounts.command("unlock")
@click.argument("employee_numbers", nargs=-1, required=True)
def unlock_command(employee_numbers: tuple[str, ...]) -> None:
    """End the lock that failed sign-ins put on the accounts of EMPLOYEE_NUMBERS (audited)."""
    ctx = context()
    with ctx.sessions.begin() as session:
        result = unlock_accounts(session, cli_actor(), employee_numbers)
    for number, username in result.unlocked:
        click.echo(f"Unlocked {printable(number)} ({printable(username)}).")
    for number, username in result.not_locked:
        click.echo(f"Not locked: {printable(number)} ({printable(username)}).")
    if result.unknown:
        click.echo(f"No account for employee number(s): {printable(', '.join(result.unknown))}", err=True)
        sys.exit(1)
