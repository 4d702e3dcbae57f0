"""`credbot accounts`: create and list Self-Service accounts."""

from __future__ import annotations

import sys

import click

from bot import jobs
from bot.accounts import (
    AccountChangeError,
    AccountsChanged,
    UsernamePatternError,
    create_accounts,
    disable_accounts,
    edit_roles,
    enable_accounts,
    list_accounts,
    rename_account,
    shown_status,
    unlock_accounts,
)
from bot.cli.common import cli_actor, context, print_table, printable
from bot.notices import notify_renamed
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


def _report_changes(done: str, result: AccountsChanged) -> None:
    """Print what a disable or enable did; exit 1 when a number was unknown."""
    for number, username in result.changed:
        click.echo(f"{done} {printable(username)} ({printable(number)})")
    for number, why in result.unchanged:
        click.echo(f"Left {printable(number)} alone: {why}")
    click.echo(f"{done} {len(result.changed)} account(s).")
    if result.unknown:
        click.echo(f"Unknown employee number(s): {printable(', '.join(result.unknown))}", err=True)
        sys.exit(1)


@accounts.command("disable")
@click.argument("employee_numbers", nargs=-1, required=True)
def disable_command(employee_numbers: tuple[str, ...]) -> None:
    """Disable the accounts of EMPLOYEE_NUMBERS: no sign-in, no credentials emailed."""
    with context().sessions.begin() as session:
        result = disable_accounts(session, cli_actor(), employee_numbers)
    _report_changes("Disabled", result)


@accounts.command("enable")
@click.argument("employee_numbers", nargs=-1, required=True)
def enable_command(employee_numbers: tuple[str, ...]) -> None:
    """Enable the disabled accounts of EMPLOYEE_NUMBERS again."""
    with context().sessions.begin() as session:
        result = enable_accounts(session, cli_actor(), employee_numbers)
    _report_changes("Enabled", result)


@accounts.command("rename")
@click.argument("employee_number")
@click.argument("new_username")
def rename_command(employee_number: str, new_username: str) -> None:
    """Give the account of EMPLOYEE_NUMBER the username NEW_USERNAME and email the employee.

    Sign-in accepts only the new username from then on.
    """
    ctx = context()
    try:
        with ctx.sessions.begin() as session:
            renamed = rename_account(session, cli_actor(), employee_number, new_username)
    except AccountChangeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Renamed {renamed.old_username} to {renamed.new_username} ({renamed.employee_number}).")
    notify_renamed(ctx, renamed, cli_actor())
    jobs.join()
    click.echo("The employee was sent an email with their new username (a failure shows in `credbot audit`).")


@accounts.command("roles")
@click.argument("employee_numbers", nargs=-1)
@click.option("--add", "add", multiple=True, metavar="ROLE", help="A role to give (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="ROLE", help="A role to take away (repeatable).")
@click.option("--department", help="Every active employee of this department instead of numbers.")
def roles_command(
    employee_numbers: tuple[str, ...], add: tuple[str, ...], remove: tuple[str, ...], department: str | None
) -> None:
    """Add and remove roles on the accounts of EMPLOYEE_NUMBERS (or of --department) at once.

    Audited as one action, with one event per employee whose roles changed.
    """
    try:
        with context().sessions.begin() as session:
            result = edit_roles(session, cli_actor(), add, remove, employee_numbers, department)
    except AccountChangeError as error:
        raise click.UsageError(str(error)) from error
    click.echo(f"Changed the roles of {result.changed} account(s); {result.unchanged} already had them.")
    if result.without_account:
        click.echo(f"No account (left alone): {', '.join(result.without_account)}")
    if result.unknown:
        click.echo(f"Unknown employee number(s): {', '.join(result.unknown)}", err=True)
        sys.exit(1)
